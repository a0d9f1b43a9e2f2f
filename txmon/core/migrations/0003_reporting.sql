-- Validated marts for regulators and BI tools (write-audit-publish), the audit of consumed Kafka
-- offsets, and the read-only role that may read the published data and nothing else.

CREATE SCHEMA IF NOT EXISTS reporting;
COMMENT ON SCHEMA reporting IS
    'Mart partitions that passed every blocking data-quality check; what regulators and BI tools read.';

-- One row per published (table, day, region): when, by which Dagster run, with which checks.
CREATE TABLE reporting.published_partitions (
    table_name     text        NOT NULL,
    partition_date date        NOT NULL,
    region         text        NOT NULL,
    published_at   timestamptz NOT NULL DEFAULT statement_timestamp(),
    run_id         text        NOT NULL,
    row_count      bigint      NOT NULL,
    checks         jsonb       NOT NULL,   -- {"<check>": {"passed": true, "summary": "..."}, ...}
    PRIMARY KEY (table_name, partition_date, region)
);

-- How far each Kafka partition's offsets have been audited (kafka_offsets_accounted check).
CREATE TABLE staging.offset_audit (
    topic            text        NOT NULL,
    "partition"      integer     NOT NULL,
    verified_through bigint      NOT NULL,
    verified_at      timestamptz NOT NULL DEFAULT statement_timestamp(),
    PRIMARY KEY (topic, "partition")
);
-- Offsets grow with the physical order of each day's partition: a BRIN index finds an offset range.
CREATE INDEX transactions_offset_brin ON staging.transactions USING brin ("offset") WITH (pages_per_range = 16);

-- bi_reader: reporting only (staging holds account identifiers; marts are unvalidated), read-only.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bi_reader') THEN
        CREATE ROLE bi_reader NOLOGIN;
    END IF;
END
$$;
ALTER ROLE bi_reader SET default_transaction_read_only = on;
REVOKE ALL ON SCHEMA staging FROM PUBLIC;
GRANT USAGE ON SCHEMA reporting TO bi_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO bi_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO bi_reader;
