{#-
  Control totals: the settlements' slice equals, per currency, the count, settled count and settled volume of the
  slice's states (which reflects_latest_events holds to staging). `model` is the settlements' slice.
-#}
{% test totals_match_state(model, state) %}
with actual as (

    select * from {{ model }}

),

expected as (

    select
        state.event_date as settlement_date,
        state.region,
        state.currency,
        count(*) as transaction_count,
        count(*) filter (where state.status = 'settled') as settled_count,
        coalesce(sum(state.amount) filter (where state.status = 'settled'), 0) as settled_volume
    from {{ state }} as state
    where {{ partition_filter('state.event_date', 'state.region') }}
    group by state.event_date, state.region, state.currency

)

select
    coalesce(expected.currency, actual.currency) as currency,
    expected.transaction_count as state_count,
    actual.transaction_count as mart_count,
    expected.settled_volume as state_volume,
    actual.settled_volume as mart_volume
from expected
full outer join actual
    on expected.settlement_date = actual.settlement_date
    and expected.region = actual.region
    and expected.currency = actual.currency
where expected.currency is null
   or actual.currency is null
   or expected.transaction_count <> actual.transaction_count
   or expected.settled_count <> actual.settled_count
   or expected.settled_volume <> actual.settled_volume
{% endtest %}
