-- Typed and renamed transaction events: the only model that reads the landing table.
with source as (

    select * from {{ source('staging', 'transactions') }}

),

renamed as (

    select
        transaction_id,
        account_id,
        counterparty_id,
        amount,
        currency,
        region,
        status,
        fraud_flag as is_fraud_flagged,
        event_time as event_at,
        (event_time at time zone 'UTC')::date as event_date,
        -- Lifecycle order for events at the same instant: a later state wins.
        case status
            when 'pending' then 0
            when 'settled' then 1
            when 'failed' then 1
            when 'reversed' then 2
        end as status_rank,
        produced_at,
        ingested_at,
        topic as kafka_topic,
        "partition" as kafka_partition,
        "offset" as kafka_offset

    from source

)

select * from renamed
