{#-
  The suspicious-activity mart's slice is exactly the slice's states that the rules select (macros suspicious_reasons
  and aml_typologies), with their reasons, evidence and USD amounts: what the incremental builds maintain equals the
  rules applied to the states now. `model` is the mart's slice (narrowed to the rows rebuilt since the last
  publication), `mart` the whole mart, `state` the whole state.
-#}
{% test selected_by_rule(model, mart, state) %}
with slice_rows as (

    select * from {{ model }}

),

-- The states judged: the slice's (those changed since the last publication) and those of the mart's rows.
judged_states as (

    select
        state.*,
        coalesce({{ partition_filter('state.event_date', 'state.region') }}{{ checked_rows('state.refreshed_at') }}, false)
            as in_slice
    from {{ state }} as state
    where ({{ partition_filter('state.event_date', 'state.region') }}{{ checked_rows('state.refreshed_at') }})
       or state.transaction_id in (select slice_rows.transaction_id from slice_rows)

),

{{ judge('judged_states') }}

select
    judged.transaction_id,
    'selected by the rules, missing from the mart' as problem
from judged
where judged.in_slice
  and cardinality(judged.reasons) > 0
  and not exists (
    select 1 from {{ mart }} as mart
    where mart.transaction_id = judged.transaction_id
      and mart.event_date = judged.event_date
      and mart.region = judged.region
  )

union all

select
    mart.transaction_id,
    'in the mart, not as the rules select its state now' as problem
from slice_rows as mart
left join judged on judged.transaction_id = mart.transaction_id
where not (
    {{ partition_filter('judged.event_date', 'judged.region') }}
    and cardinality(judged.reasons) > 0
    and judged.reasons = mart.reasons
    and judged.evidence is not distinct from mart.evidence
    and judged.amount_usd is not distinct from mart.amount_usd
    and judged.amount = mart.amount
    and judged.status = mart.status
) is true
{% endtest %}
