-- Each transaction's latest event (greatest event_at; at the same instant the later lifecycle
-- state, then the later Kafka offset), in the region x UTC-day slice where that event falls.
-- A transaction whose later event lies on a later day belongs to that day, not to this one;
-- later events are looked for up to `lifecycle_window_days` after the slice.
-- is_fraud_flagged is sticky: true when any event of the transaction (in the slice, or up to
-- `lifecycle_window_days` before it) carried the upstream fraud flag.
-- depends_on: {{ source('staging', 'transactions') }}
{{
    config(
        pre_hook="{{ delete_partition('event_date', 'region') }}",
        post_hook=[
            "{{ create_slice_index('event_date, region, transaction_id') }}",
            "{{ create_slice_index('event_date, region, refreshed_at') }}",
            "{{ record_watermark() }}",
            "{{ mark_neighbours() }}",
            "{{ analyze_after_full_build() }}",
        ],
    )
}}

{#- The slice's day and region: constants in a partitioned run (the planner reads only the days they cover). -#}
{% set day = "'" ~ var('partition_date') ~ "'::date" if var('partition_date') is not none else 'latest.event_date' %}
{% set region = "'" ~ var('partition_region') ~ "'" if var('partition_region') is not none else 'latest.region' %}
{#- An event on a later day of the window (one on this day would be the transaction's latest here). -#}
{% set on_later_day -%}
later.event_at >= ({{ day }} + 1)::timestamp at time zone 'UTC'
and later.event_at < ({{ day }} + 1 + {{ var('lifecycle_window_days') }})::timestamp at time zone 'UTC'
{%- endset %}
{#- A later event of the transaction. -#}
{% set later_event -%}
    select 1
    from {{ ref('stg_transactions') }} as later
    where later.transaction_id = latest.transaction_id
      and {{ on_later_day }}
{%- endset %}
{#- A flagged event in the slice or in the window before it (in any region). -#}
{% set flagged_in_window -%}
    flagged.is_fraud_flagged
    and flagged.event_at >= ({{ day }} - {{ var('lifecycle_window_days') }})::timestamp at time zone 'UTC'
    and flagged.event_at < ({{ day }} + 1)::timestamp at time zone 'UTC'
    and (flagged.event_at < {{ day }}::timestamp at time zone 'UTC' or flagged.region = {{ region }})
{%- endset %}
{#- The whole slice of a partitioned run (not a new_data run's few transactions, nor a build of every slice). -#}
{% set whole_slice = var('partition_date') is not none and not new_data_run() %}
with slice_events as (

    {{ slice_rows(ref('stg_transactions'), in_partition('event_at', 'region')) }}

),

latest_in_slice as (

    -- collate "C": grouping by identifier needs no linguistic order, and byte order sorts twice as fast.
    select distinct on (transaction_id collate "C") *
    from slice_events
    order by transaction_id collate "C", event_at desc, status_rank desc, kafka_offset desc

){% if whole_slice %},

superseded as (

    -- The slice's transactions with an event on a later day of the window: the later days' events are read against
    -- the slice's transactions (hashed), so only those few are hashed for the anti-join below, not every later event.
    select distinct later.transaction_id
    from {{ ref('stg_transactions') }} as later
    where {{ on_later_day }}
      and later.transaction_id in (select transaction_id from latest_in_slice)

)
{%- endif %}

select
    latest.transaction_id,
    latest.account_id,
    latest.counterparty_id,
    latest.amount,
    latest.currency,
    latest.region,
    latest.status,
    {% if whole_slice -%}
    flagged.transaction_id is not null as is_fraud_flagged,
    {%- else -%}
    exists(
        select 1
        from {{ ref('stg_transactions') }} as flagged
        where flagged.transaction_id = latest.transaction_id and {{ flagged_in_window }}
    ) as is_fraud_flagged,
    {%- endif %}
    latest.event_at,
    latest.event_date,
    latest.kafka_partition,
    latest.kafka_offset,
    now() as refreshed_at

from latest_in_slice as latest
-- A whole slice joins the window's flagged transactions once (a small partial index finds them); a few
-- changed transactions (or a build of every slice) probe theirs one by one. Later events: probed per
-- transaction in a new_data run; a whole slice leaves out its superseded transactions (found above); a build of
-- every slice, one anti-join over the later days.
{% if whole_slice -%}
left join (
    select distinct flagged.transaction_id
    from {{ ref('stg_transactions') }} as flagged
    where {{ flagged_in_window }}
) as flagged on latest.transaction_id = flagged.transaction_id
{% endif -%}
{% if new_data_run() -%}
left join lateral ({{ later_event }} limit 1) as superseded on true
where superseded is null
{%- elif whole_slice -%}
where not exists (select 1 from superseded where superseded.transaction_id = latest.transaction_id)
{%- else -%}
where not exists ({{ later_event }})
{%- endif %}
