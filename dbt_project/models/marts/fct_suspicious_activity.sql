-- Suspicious transactions (latest state): USD amount strictly above the threshold of the region, or flagged by the
-- upstream fraud screen (macro suspicious_reasons), or in a structuring or velocity group of its account (macro
-- aml_typologies, with the group as evidence). One row per transaction, with every reason that applies; rebuilt one
-- region x day slice per run, from the transactions' states; in a new_data run, the changed transactions and every
-- transaction of each account whose groups or windows the changes may have altered (macro rejudged_accounts).
{{
    config(
        alias='suspicious_activity',
        pre_hook="{{ delete_slice('event_date', by_account=true) }}",
        post_hook=[
            "{{ create_index('event_date, region, transaction_id') }}",
            "{{ create_index('event_date, region, refreshed_at') }}",
            "{{ record_watermark() }}",
            "{{ analyze_after_full_build() }}",
        ],
    )
}}

with state as (

    {{ state_of_slice(by_account=true) }}

),

{{ judge('state', accounts=('txmon_rejudged_accounts' if new_data_run() else none)) }}

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
    now() as refreshed_at,
    -- after refreshed_at: where adding it to an existing table puts it (on_schema_change, migration 0019)
    evidence

from judged
where cardinality(reasons) > 0
