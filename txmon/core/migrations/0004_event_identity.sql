-- The contract's identity of an event is (transaction_id, status), whatever its time or amount.
-- staging.transactions cannot say so itself (a unique key of a partitioned table must hold the
-- partition key, event_time), so one row per identity lives here, written in the landing
-- transaction, pointing at the one event that landed.
CREATE TABLE staging.event_identities (
    transaction_id text        NOT NULL,
    status         text        NOT NULL,
    event_time     timestamptz NOT NULL,
    topic          text        NOT NULL,
    "partition"    integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    PRIMARY KEY (transaction_id, status)
);
COMMENT ON TABLE staging.event_identities IS
    'One row per event identity (transaction_id, status): the Kafka message whose event landed in staging.transactions.';

-- Events landed before this migration: the first landed of each identity keeps it; any other is
-- moved to the duplicates, where a redelivery with another time or amount belongs.
INSERT INTO staging.event_identities (transaction_id, status, event_time, topic, "partition", "offset")
SELECT DISTINCT ON (transaction_id, status) transaction_id, status, event_time, topic, "partition", "offset"
FROM staging.transactions
ORDER BY transaction_id, status, ingested_at, "offset";

WITH moved AS (
    DELETE FROM staging.transactions AS t
    USING staging.event_identities AS i
    WHERE t.transaction_id = i.transaction_id AND t.status = i.status
      AND (t.topic, t."partition", t."offset") IS DISTINCT FROM (i.topic, i."partition", i."offset")
    RETURNING t.topic, t."partition", t."offset", t.transaction_id, t.status, t.event_time, t.ingested_at
)
INSERT INTO staging.duplicate_transactions (topic, "partition", "offset", transaction_id, status, event_time, received_at)
SELECT topic, "partition", "offset", transaction_id, status, event_time, ingested_at FROM moved;

-- Where the stored positions were taken from: a position is only meaningful on the topic it was
-- read from. A recreated topic (new topic id) or another cluster stops the worker instead of
-- skipping messages silently.
ALTER TABLE staging.kafka_offsets
    ADD COLUMN cluster_id text,
    ADD COLUMN topic_id   text;
