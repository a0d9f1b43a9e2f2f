-- The transformation core keeps one row per transaction (dbt model int_transaction_state), advanced by one merge per
-- refresh over the staging rows landed since its watermark; the marts are filters and aggregates of it, per region x day
-- slice. What the merge needs beside the table dbt builds:
-- - its watermark: every staging row landed before processed_until is in the state;
-- - the slices it changed (a transaction's new slice, and its old one when it moved to another day): each is refreshed,
--   checked and published next. They replace the per-transaction neighbour marks.
CREATE TABLE intermediate.state_watermark (
    model           text        PRIMARY KEY,
    processed_until timestamptz NOT NULL,
    built_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE intermediate.changed_slices (
    slice_date date        NOT NULL,
    region     text        NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (slice_date, region)
);
ALTER TABLE intermediate.state_watermark OWNER TO txmon_transform;
ALTER TABLE intermediate.changed_slices OWNER TO txmon_transform;
GRANT SELECT ON intermediate.state_watermark TO txmon_publish;
DROP TABLE intermediate.slice_dirty;
DROP TABLE IF EXISTS intermediate.int_transactions_latest;
DELETE FROM intermediate.slice_watermarks WHERE model = 'int_transactions_latest';
-- The state's lock, shared by the slices' refreshes (txmon/quality/publication.py: state_lock).
GRANT EXECUTE ON FUNCTION pg_advisory_lock_shared(bigint), pg_advisory_unlock_shared(bigint) TO txmon_transform;
