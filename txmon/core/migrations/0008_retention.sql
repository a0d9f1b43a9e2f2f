-- Retention and privacy (txmon/retention.py prunes what is past its age, in bounded batches).

-- The verbatim message of each landed event that carried extra fields not on the allow-list
-- (TXMON_EXTRA_FIELDS): staging.transactions.raw_event keeps the contract's fields and the allowed
-- extra fields only, this audit copy the whole message, for TXMON_RAW_EVENT_RETENTION_DAYS.
-- Written in the landing transaction; a copy, not an outcome: the event's offset is accounted for
-- by its row in staging.transactions.
CREATE TABLE staging.raw_events (
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    raw_value    bytea       NOT NULL,   -- the Kafka message value, as consumed
    received_at  timestamptz NOT NULL DEFAULT statement_timestamp(),
    PRIMARY KEY (topic, "partition", "offset")
);
COMMENT ON TABLE staging.raw_events IS
    'Verbatim messages of landed events stored without some of their extra fields; pruned after TXMON_RAW_EVENT_RETENTION_DAYS.';

-- Pruning finds the oldest rows of each append-only table by time: BRIN indexes follow the
-- physical order at almost no cost to the landing.
CREATE INDEX raw_events_received_at_brin ON staging.raw_events USING brin (received_at);
CREATE INDEX rejected_transactions_received_at_brin ON staging.rejected_transactions USING brin (received_at);
CREATE INDEX duplicate_transactions_received_at_brin ON staging.duplicate_transactions USING brin (received_at);
CREATE INDEX ingest_batches_committed_at_brin ON staging.ingest_batches USING brin (committed_at);

-- Ingestion writes the audit copies, and prunes its own bookkeeping past its age: only what the
-- offset audit has verified (it reads how far, nothing else of the audit's).
GRANT SELECT, INSERT ON staging.raw_events TO txmon_ingest;
GRANT DELETE ON staging.raw_events, staging.rejected_transactions, staging.duplicate_transactions,
    staging.ingest_batches TO txmon_ingest;
GRANT SELECT ON staging.offset_audit TO txmon_ingest;
-- The verbatim messages hold the fields the allow-list keeps out of staging: no check or model reads them.
REVOKE ALL ON staging.raw_events FROM txmon_transform;
