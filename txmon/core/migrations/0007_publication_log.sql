-- Every publication, append-only: when, by which run, which checks passed, who published it (the
-- database role and what launched it). reporting.published_partitions becomes the latest entry per
-- partition, a view of the log, so no publication is ever overwritten.
CREATE TABLE reporting.publication_log (
    publication_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name     text        NOT NULL,
    partition_date date        NOT NULL,
    region         text        NOT NULL,
    published_at   timestamptz NOT NULL DEFAULT statement_timestamp(),
    run_id         text        NOT NULL,
    row_count      bigint      NOT NULL,
    checks         jsonb       NOT NULL,   -- {"<check>": {"passed": true, "summary": "..."}, ...}
    staging_as_of  timestamptz,            -- every row landed before it was checked by this publication
    built_as_of    timestamptz,            -- the slice's build (watermark) the checks and the copy saw
    published_by   name        NOT NULL DEFAULT current_user,
    launched_by    text        NOT NULL    -- what started it: a sensor, a schedule, a CLI command and its user
);
CREATE INDEX publication_log_partition ON reporting.publication_log (table_name, partition_date, region, publication_id DESC);
COMMENT ON TABLE reporting.publication_log IS
    'Append-only log of publications to reporting: one row per partition published, never updated or deleted.';

INSERT INTO reporting.publication_log
    (table_name, partition_date, region, published_at, run_id, row_count, checks, staging_as_of, published_by, launched_by)
SELECT table_name, partition_date, region, published_at, run_id, row_count, checks, staging_as_of, current_user,
       'before 0007 (not recorded)'
FROM reporting.published_partitions
ORDER BY published_at;
DROP TABLE reporting.published_partitions;

CREATE VIEW reporting.published_partitions AS
SELECT DISTINCT ON (table_name, partition_date, region)
       table_name, partition_date, region, published_at, run_id, row_count, checks, staging_as_of, built_as_of,
       published_by, launched_by
FROM reporting.publication_log
ORDER BY table_name, partition_date, region, publication_id DESC;
COMMENT ON VIEW reporting.published_partitions IS 'The latest publication of each (table, day, region).';

CREATE FUNCTION reporting.refuse_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reporting.publication_log is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON reporting.publication_log
    FOR EACH ROW EXECUTE FUNCTION reporting.refuse_log_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON reporting.publication_log
    FOR EACH STATEMENT EXECUTE FUNCTION reporting.refuse_log_change();

-- Who published and when are the database's to say: the publication role writes the other columns only.
GRANT SELECT ON reporting.publication_log TO txmon_publish;
GRANT INSERT (table_name, partition_date, region, run_id, row_count, checks, staging_as_of, built_as_of, launched_by)
    ON reporting.publication_log TO txmon_publish;
GRANT SELECT ON reporting.publication_log, reporting.published_partitions TO txmon_transform, txmon_publish, bi_reader;

-- The slices' build watermarks and neighbour marks, kept by the partitioned models' hooks
-- (dbt_project/macros/partition_window.sql). Declared here, not at dbt's start, so that publication
-- can read the watermarks it verifies.
CREATE TABLE IF NOT EXISTS intermediate.slice_watermarks (
    model           text        NOT NULL,
    slice_date      date        NOT NULL,
    region          text        NOT NULL,
    processed_until timestamptz NOT NULL,
    PRIMARY KEY (model, slice_date, region)
);
-- Identifies a build (processed_until may repeat while an older transaction stays open).
ALTER TABLE intermediate.slice_watermarks ADD COLUMN IF NOT EXISTS built_at timestamptz NOT NULL DEFAULT clock_timestamp();
-- Transactions of a built slice that an event landed in another slice may have changed (a later
-- event supersedes this slice's latest one; an earlier one carries a fraud flag): the slice's next
-- new_data refresh rebuilds them too (mark_neighbours).
CREATE TABLE IF NOT EXISTS intermediate.slice_dirty (
    model          text        NOT NULL,
    slice_date     date        NOT NULL,
    region         text        NOT NULL,
    transaction_id text        NOT NULL,
    marked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, slice_date, region, transaction_id)
);
ALTER TABLE intermediate.slice_watermarks OWNER TO txmon_transform;
ALTER TABLE intermediate.slice_dirty OWNER TO txmon_transform;
GRANT USAGE ON SCHEMA intermediate TO txmon_publish;
GRANT SELECT ON intermediate.slice_watermarks TO txmon_publish;

-- The run clock of a slice's build: the start of the oldest transaction still open in the database
-- (rows it lands later carry an ingested_at before it) or now. pg_stat_activity shows other roles'
-- transactions only to its owner, hence SECURITY DEFINER, for the transformation role alone.
CREATE FUNCTION txmon.run_clock() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT least(now(), min(xact_start)) FROM pg_catalog.pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
$$;
REVOKE EXECUTE ON FUNCTION txmon.run_clock() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION txmon.run_clock() TO txmon_transform;
