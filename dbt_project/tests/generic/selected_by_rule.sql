{#-
  The suspicious-activity mart's slice is exactly the slice's states that the rule (macro suspicious_reasons) selects,
  with their reasons and USD amounts: what the incremental builds maintain equals the rule applied to the states now.
  `model` is the mart's slice (narrowed to the rows rebuilt since the last publication), `mart` the whole mart,
  `state` the whole state.
-#}
{% test selected_by_rule(model, mart, state) %}
with slice_rows as (

    select * from {{ model }}

),

changed as (

    select
        state.*,
        {{ amount_usd('state') }} as amount_usd
    from {{ state }} as state
    {{ join_usd_rate('state') }}
    where {{ partition_filter('state.event_date', 'state.region') }}{{ checked_rows('state.refreshed_at') }}

),

published as (

    select
        mart.transaction_id,
        mart.reasons as mart_reasons,
        mart.amount_usd as mart_amount_usd,
        mart.amount as mart_amount,
        mart.status as mart_status,
        state.event_date,
        state.region,
        state.amount,
        state.status,
        state.is_fraud_flagged,
        {{ amount_usd('state') }} as amount_usd
    from slice_rows as mart
    left join {{ state }} as state on mart.transaction_id = state.transaction_id
    {{ join_usd_rate('state') }}

)

select
    changed.transaction_id,
    'selected by the rule, missing from the mart' as problem
from changed
where cardinality({{ suspicious_reasons('changed') }}) > 0
  and not exists (
    select 1 from {{ mart }} as mart
    where mart.transaction_id = changed.transaction_id
      and mart.event_date = changed.event_date
      and mart.region = changed.region
  )

union all

select
    published.transaction_id,
    'in the mart, not as the rule selects its state now' as problem
from published
where not (
    {{ partition_filter('published.event_date', 'published.region') }}
    and cardinality({{ suspicious_reasons('published') }}) > 0
    and {{ suspicious_reasons('published') }} = published.mart_reasons
    and published.amount_usd is not distinct from published.mart_amount_usd
    and published.amount = published.mart_amount
    and published.status = published.mart_status
) is true
{% endtest %}
