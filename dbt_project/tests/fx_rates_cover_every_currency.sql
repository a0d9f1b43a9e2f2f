-- Every configured currency has a rate from the first day of the partitions on, so that every
-- transaction converts to USD (the suspicious-activity threshold depends on it).
{{ config(tags=['reference']) }}

with configured as (

    {% for currency in var('currencies') %}
    {% if not loop.first %}
    union all
    {% endif %}
    select '{{ currency }}'::text as currency
    {% endfor %}

)

select configured.currency
from configured
left join {{ ref('fx_rates') }} as fx
    on configured.currency = fx.currency
        and fx.rate_date <= '{{ var('partitions_start_date') }}'::date
where fx.currency is null
