{#-
  The contract's rules, each written once and used by the models and by the tests that check them.
-#}

{#- A transaction's latest event first: greatest event time, then the later lifecycle state, then the later offset. -#}
{% macro latest_first() -%}
    event_at desc, status_rank desc, kafka_offset desc
{%- endmacro %}


{#- An event later than a transaction's state by that order (the state's own event is not). -#}
{% macro later_than(event, state) -%}
    ({{ event }}.event_at, {{ event }}.status_rank, {{ event }}.kafka_offset)
    > ({{ state }}.event_at, {{ state }}.status_rank, {{ state }}.kafka_offset)
{%- endmacro %}


{#- The suspicious-activity threshold in USD for a region: an override, else the default. -#}
{% macro suspicious_threshold_usd(region_column) -%}
    {%- set overrides = var('suspicious_threshold_usd_by_region') -%}
    {%- set default = var('suspicious_threshold_usd') -%}
    {%- if overrides -%}
        case {{ region_column }}
        {%- for region, threshold in overrides.items() %}
            when '{{ region }}' then {{ threshold }}::numeric
        {%- endfor %}
            else {{ default }}::numeric
        end
    {%- else -%}
        {{ default }}::numeric
    {%- endif -%}
{%- endmacro %}


{#-
  FX rule: the rate of the currency with the latest rate_date on or before the business day (none: amount_usd null).
  A join (`usd_rate`), planned with a cache per currency and day, then amount_usd of the joined row.
-#}
{% macro join_usd_rate(alias) -%}
    left join lateral (
        select fx.usd_per_unit
        from {{ ref('fx_rates') }} as fx
        where fx.currency = {{ alias }}.currency and fx.rate_date <= {{ alias }}.event_date
        order by fx.rate_date desc
        limit 1
    ) as usd_rate on true
{%- endmacro %}


{% macro amount_usd(alias) -%}
    round({{ alias }}.amount * usd_rate.usd_per_unit, 4)
{%- endmacro %}


{#-
  The suspicious-activity reasons of a latest state (`alias` has amount_usd, region and is_fraud_flagged): the USD
  amount strictly above the region's threshold, the upstream fraud flag. Suspicious when not empty.
-#}
{% macro suspicious_reasons(alias) -%}
    array_remove(array[
        case when {{ alias }}.amount_usd > {{ suspicious_threshold_usd(alias ~ '.region') }} then 'amount_over_threshold' end,
        case when {{ alias }}.is_fraud_flagged then 'fraud_flag' end
    ], null)::text[]
{%- endmacro %}
