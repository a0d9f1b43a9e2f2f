-- Per UTC day, region and currency: how many transactions have their latest event that day, and how many of those (and
-- how much volume) settled. Always rebuilds its whole slice (an aggregate of the slice's states).
{{
    config(
        alias='daily_settlements',
        pre_hook="{{ delete_slice('settlement_date', by_transaction=false) }}",
        post_hook=[
            "{{ create_index('settlement_date, region') }}",
            "{{ record_watermark() }}",
            "{{ analyze_after_full_build() }}",
        ],
    )
}}

with state as (

    select * from {{ ref('int_transaction_state') }}
    where {{ partition_filter('event_date', 'region') }}

)

select
    event_date as settlement_date,
    region,
    currency,
    count(*) as transaction_count,
    count(*) filter (where status = 'settled') as settled_count,
    coalesce(sum(amount) filter (where status = 'settled'), 0)::numeric(20, 4) as settled_volume

from state
group by event_date, region, currency
