-- How far staging was checked by each publication: every row landed before staging_as_of was checked,
-- by a refresh whose every check passed. The next incremental refresh of the partition checks what
-- landed (and what it rebuilt) since then.
ALTER TABLE reporting.published_partitions ADD COLUMN IF NOT EXISTS staging_as_of timestamptz;
