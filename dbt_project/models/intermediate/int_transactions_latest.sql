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
            {"sql": "{{ analyze_after_full_build() }}", "transaction": false},
        ],
    )
}}

with slice_events as (

    {{ slice_rows(ref('stg_transactions'), in_partition('event_at', 'region')) }}

),

ranked as (

    select
        *,
        -- collate "C": grouping by identifier needs no linguistic order, and byte order sorts twice as fast.
        bool_or(is_fraud_flagged) over (partition by transaction_id collate "C") as is_flagged_in_slice,
        row_number() over (
            partition by transaction_id collate "C"
            order by event_at desc, status_rank desc, kafka_offset desc
        ) as recency

    from slice_events

),

latest_in_slice as (

    select * from ranked
    where recency = 1

)

select
    transaction_id,
    account_id,
    counterparty_id,
    amount,
    currency,
    region,
    status,
    is_flagged_in_slice or exists (
        select 1
        from {{ ref('stg_transactions') }} as earlier
        where earlier.transaction_id = latest.transaction_id
            and earlier.is_fraud_flagged
            and earlier.event_at < ('{{ var('partition_date') or '1970-01-01' }}'::date)::timestamp at time zone 'UTC'
            and earlier.event_at >= (
                latest.event_date - {{ var('lifecycle_window_days') }}
            )::timestamp at time zone 'UTC'
    ) as is_fraud_flagged,
    event_at,
    event_date,
    kafka_partition,
    kafka_offset,
    now() as refreshed_at

from latest_in_slice as latest
-- Not superseded by a later event of the same transaction (on this day or a later one): probed
-- per transaction when only a few changed, as one anti-join over the days when the slice is rebuilt.
{% set later_event -%}
    select 1
    from {{ ref('stg_transactions') }} as later
    where later.transaction_id = latest.transaction_id
      and later.event_at > latest.event_at
      and later.event_at < (latest.event_date + 1 + {{ var('lifecycle_window_days') }})::timestamp at time zone 'UTC'
{%- endset %}
{% if new_data_run() -%}
left join lateral ({{ later_event }} limit 1) as superseded on true
where superseded is null
{%- else -%}
where not exists ({{ later_event }})
{%- endif %}
