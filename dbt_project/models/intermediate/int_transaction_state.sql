-- One row per transaction: its latest event (the contract's order, macro latest_first) with the region x UTC day slice
-- it counts in, and the sticky fraud flag. Advanced by one merge over the staging rows landed since the last one: the
-- merged rows' prior states compete with the new events, so each event is read once, in any landing order. A full
-- partitioned run also restates its slice from staging (macro restating).
-- is_fraud_flagged: an event of the transaction carried the upstream flag within the lifecycle window before the
-- latest event's day (flagged_at, the latest flagged event's time, makes it exact).
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='transaction_id',
        pre_hook="{{ state_clock() }}",
        post_hook=[
            "{{ create_index('transaction_id', unique=true) }}",
            "{{ create_index('event_date, region, refreshed_at') }}",
            "{{ create_index('refreshed_at') }}",
            "{{ create_index('account_id, region, event_at') }}",
            "{{ mark_changed_slices() }}",
            "{{ record_state_watermark() }}",
            "{{ analyze_after_large_merge() }}",
        ],
    )
}}

-- not materialized: each use below is planned with its own filter (a day's partitions, an index).
with events as not materialized (

    select
        ingested_at,
        is_fraud_flagged,
        {{ state_event_columns() }},
        case when is_fraud_flagged then event_at end as flagged_at
    from {{ ref('stg_transactions') }}

),

landed as (

    select * from events
    {%- if is_incremental() %}
    where ingested_at >= {{ state_watermark() }}
    {%- if restating() %}
      and not ({{ in_partition('event_at', 'region') }})
    union all
    select * from events
    where {{ in_partition('event_at', 'region') }}
    union all
    select * from events
    where is_fraud_flagged
      and event_at >= ('{{ var('partition_date') }}'::date - {{ var('lifecycle_window_days') }})::timestamp at time zone 'UTC'
      and event_at < ('{{ var('partition_date') }}'::date + 1)::timestamp at time zone 'UTC'
    {%- endif %}
    {%- endif %}

),

{% if is_incremental() -%}
prior as (

    select *
    from {{ this }}
    where transaction_id in (select landed.transaction_id from landed)

),
{%- endif %}

candidates as (

    select
        {{ state_event_columns() }},
        flagged_at
    from landed
    {%- if is_incremental() %}
    union all
    select
        {{ state_event_columns() }},
        flagged_at
    from prior
    {%- endif %}

),

latest as (

    -- One sort serves both: the window's frame is the whole transaction, in the order DISTINCT ON keeps the first of.
    -- collate "C": grouping by identifier needs no linguistic order, and byte order sorts twice as fast.
    select distinct on (transaction_id collate "C")
        *,
        max(flagged_at) over (
            partition by transaction_id collate "C"
            order by {{ latest_first() }}
            rows between unbounded preceding and unbounded following
        ) as any_flagged_at
    from candidates
    order by transaction_id collate "C", {{ latest_first() }}

)

select
    {{ state_event_columns('latest') }},
    latest.any_flagged_at as flagged_at,
    coalesce(
        latest.any_flagged_at >= (latest.event_date - {{ var('lifecycle_window_days') }})::timestamp at time zone 'UTC',
        false
    ) as is_fraud_flagged,
    {% if is_incremental() -%}
    prior.event_date as previous_event_date,
    prior.region as previous_region,
    prior.event_at as previous_event_at,
    prior.amount as previous_amount,
    prior.currency as previous_currency,
    {%- else -%}
    null::date as previous_event_date,
    null::text as previous_region,
    null::timestamptz as previous_event_at,
    null::numeric as previous_amount,
    null::text as previous_currency,
    {%- endif %}
    {{ merged_at() }} as refreshed_at

from latest
{% if is_incremental() -%}
left join prior on latest.transaction_id = prior.transaction_id
{%- endif %}
