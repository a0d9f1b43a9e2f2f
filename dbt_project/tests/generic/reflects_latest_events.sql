{#-
  The state against staging, for the slice: no event landed before the state's watermark is later than its
  transaction's state (or has none), and every state of the slice is a landed event, amount and all. `model` is the
  state's slice (the test's where), `state` the whole state (an event's transaction may now count in another slice).
-#}
{% test reflects_latest_events(model, state, events) %}
with slice_states as (

    select * from {{ model }}

),

slice_events as (

    select * from {{ events }} as event
    where {{ in_partition('event.event_at', 'event.region') }}
      and event.ingested_at < (
        select w.processed_until from intermediate.state_watermark as w where w.model = 'int_transaction_state'
      ){{ checked_rows('event.ingested_at') }}

)

select
    event.transaction_id,
    'an event later than its transaction''s state, or without one' as problem
from slice_events as event
left join {{ state }} as state on event.transaction_id = state.transaction_id
where state.transaction_id is null or {{ later_than('event', 'state') }}

union all

select
    state.transaction_id,
    'a state that is no landed event' as problem
from slice_states as state
where not exists (
    -- a state of the slice is an event of the slice: only the slice's day is read
    select 1 from {{ events }} as event
    where {{ in_partition('event.event_at', 'event.region') }}
      and event.transaction_id = state.transaction_id
      and event.status = state.status
      and event.event_at = state.event_at
      and event.amount = state.amount
      and event.currency = state.currency
      and event.region = state.region
      and event.kafka_offset = state.kafka_offset
)
{% endtest %}
