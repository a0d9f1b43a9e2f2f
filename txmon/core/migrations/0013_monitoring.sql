-- Monitoring (docs/monitoring.md). The PostgreSQL exporter connects as txmon_exporter: the server's
-- statistics views (pg_monitor), no table of txmon's, read-only.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'txmon_exporter') THEN
        CREATE ROLE txmon_exporter NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO txmon_exporter', current_database());
END
$$;
GRANT pg_monitor TO txmon_exporter;
ALTER ROLE txmon_exporter SET default_transaction_read_only = on;
ALTER ROLE txmon_exporter SET statement_timeout = '10s';

-- The API's /metrics computes the quarantine rate from the batch log's counts (not its workers,
-- offsets or slices).
GRANT SELECT (committed_at, landed, duplicates, quarantined) ON staging.ingest_batches TO txmon_api_monitor;

-- /metrics: the latest day each (table, region) has published, from an index.
CREATE INDEX publication_log_latest_day ON reporting.publication_log (table_name, region, partition_date DESC);
