-- Suspicious transactions (latest state): USD amount strictly above the threshold of the region,
-- or flagged by the upstream fraud screen. One row per transaction, with every reason that applies.
-- depends_on: {{ ref('stg_transactions') }}  (the new_data pre-hook reads it)
{{
    config(
        alias='suspicious_activity',
        pre_hook="{{ delete_partition('event_date', 'region') }}",
        post_hook=[
            "{{ create_slice_index('event_date, region, transaction_id') }}",
            "{{ create_slice_index('event_date, region, refreshed_at') }}",
            "{{ record_watermark(upstream='int_transactions_latest') }}",
            "{{ analyze_after_full_build() }}",
        ],
    )
}}

with latest as (

    {{ slice_rows(ref('int_transactions_latest'), partition_filter('event_date', 'region')) }}

),

converted as (

    select
        latest.*,
        round(latest.amount * rate.usd_per_unit, 4) as amount_usd,
        {{ suspicious_threshold_usd('latest.region') }} as threshold_usd

    from latest
    left join lateral (
        -- FX rule: the rate with the latest rate_date on or before the business day.
        select fx.usd_per_unit
        from {{ ref('fx_rates') }} as fx
        where fx.currency = latest.currency
            and fx.rate_date <= latest.event_date
        order by fx.rate_date desc
        limit 1
    ) as rate on true

),

flagged as (

    select
        *,
        array_remove(array[
            case when amount_usd > threshold_usd then 'amount_over_threshold' end,
            case when is_fraud_flagged then 'fraud_flag' end
        ], null)::text[] as reasons

    from converted

)

select
    transaction_id,
    account_id,
    counterparty_id,
    region,
    amount,
    currency,
    amount_usd,
    threshold_usd,
    status,
    event_at as event_time,
    event_date,
    reasons,
    now() as refreshed_at

from flagged
where cardinality(reasons) > 0
