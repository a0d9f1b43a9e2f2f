-- Landing zone for the transaction stream (see CONTRACT.md section 3).

CREATE SCHEMA IF NOT EXISTS staging;

-- One row per distinct event. Range-partitioned by the UTC day of event_time; a day's partition
-- is created on first use (staging.ensure_transactions_partition), so late events land in old days.
CREATE TABLE staging.transactions (
    transaction_id  text          NOT NULL,
    status          text          NOT NULL,
    event_time      timestamptz   NOT NULL,
    account_id      text          NOT NULL,
    counterparty_id text,
    amount          numeric(16,4) NOT NULL CHECK (amount > 0),
    currency        text          NOT NULL,
    region          text          NOT NULL,
    fraud_flag      boolean       NOT NULL DEFAULT false,
    produced_at     timestamptz,                           -- the Kafka message timestamp
    ingested_at     timestamptz   NOT NULL DEFAULT statement_timestamp(),
    topic           text          NOT NULL,
    "partition"     integer       NOT NULL,
    "offset"        bigint        NOT NULL,
    raw_event       jsonb         NOT NULL,
    -- The identity of an event is (transaction_id, status); event_time is part of the key because
    -- a unique constraint on a partitioned table must contain the partition key.
    PRIMARY KEY (transaction_id, status, event_time)
) PARTITION BY RANGE (event_time);

COMMENT ON TABLE staging.transactions IS
    'One row per distinct transaction event, landed from Kafka exactly once. Partitioned by UTC day of event_time.';

-- Every message that broke the contract, verbatim, with where it came from and why.
CREATE TABLE staging.rejected_transactions (
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    kafka_key    bytea,
    raw_value    bytea,
    raw_text     text,        -- raw_value as text when it is valid UTF-8 without NUL
    reason       text        NOT NULL,
    produced_at  timestamptz,
    received_at  timestamptz NOT NULL DEFAULT statement_timestamp(),
    PRIMARY KEY (topic, "partition", "offset")
);

-- Redeliveries of an event already landed (same transaction_id and status): not stored twice,
-- but recorded so that every consumed offset is accounted for.
CREATE TABLE staging.duplicate_transactions (
    topic          text        NOT NULL,
    "partition"    integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    transaction_id text        NOT NULL,
    status         text        NOT NULL,
    event_time     timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT statement_timestamp(),
    PRIMARY KEY (topic, "partition", "offset")
);

-- The consumer's position, written in the same transaction as the rows it covers: every offset
-- below next_offset is landed, a duplicate or quarantined in this database.
CREATE TABLE staging.kafka_offsets (
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL,
    next_offset  bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT statement_timestamp(),
    PRIMARY KEY (topic, "partition")
);

-- One row per committed micro-batch: what it landed where. Orchestration reads this to report
-- which region x day partitions of staging changed.
CREATE TABLE staging.ingest_batches (
    batch_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    worker       text        NOT NULL,
    landed       integer     NOT NULL,
    duplicates   integer     NOT NULL,
    quarantined  integer     NOT NULL,
    offsets      jsonb       NOT NULL,   -- {"<partition>": [first, last], ...}
    slices       jsonb       NOT NULL    -- {"<YYYY-MM-DD>|<REGION>": landed rows, ...}
);

CREATE FUNCTION staging.ensure_transactions_partition(day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := format('transactions_%s', to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(format('staging.%I', name)) IS NOT NULL THEN
        RETURN;
    END IF;
    -- Serialise concurrent creators (several ingest workers meeting the same new day).
    PERFORM pg_advisory_xact_lock(hashtext('staging.transactions partitions'));
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS staging.%I PARTITION OF staging.transactions '
        'FOR VALUES FROM (%L) TO (%L)',
        name, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
END;
$$;
