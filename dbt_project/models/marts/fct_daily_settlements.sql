-- Per UTC day, region and currency: how many transactions have their latest event that day, and how
-- many of those (and how much volume) settled. Always rebuilds its whole slice (an aggregate).
{{
    config(
        alias='daily_settlements',
        pre_hook="{{ delete_partition('settlement_date', 'region', by_transaction=false) }}",
        post_hook=[
            "{{ create_slice_index('settlement_date, region') }}",
            "{{ record_watermark(upstream='int_transactions_latest') }}",
            "{{ analyze_after_full_build() }}",
        ],
    )
}}

with latest as (

    select * from {{ ref('int_transactions_latest') }}
    where {{ partition_filter('event_date', 'region') }}

)

select
    event_date as settlement_date,
    region,
    currency,
    count(*) as transaction_count,
    count(*) filter (where status = 'settled') as settled_count,
    coalesce(sum(amount) filter (where status = 'settled'), 0)::numeric(20, 4) as settled_volume

from latest
group by event_date, region, currency
