-- The HTTP API (`txmon api`) connects as three roles by duty, so that what a key may read is also
-- what its database role may read: a bug in the API cannot show a regulator staging.
--   txmon_api_regulator: the published tables (reporting), nothing else;
--   txmon_api_analyst:   the same and staging's landed events (not the quarantine, not the audit copies);
--   txmon_api_monitor:   /health and /metrics: the Kafka positions and the publication log.
-- None may write anything; each session is read-only by default as well.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['txmon_api_regulator', 'txmon_api_analyst', 'txmon_api_monitor'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = name
                   AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)) THEN
            EXECUTE format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', name);
        END IF;
        EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', name);
        EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', name, '10s');
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), name);
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA reporting TO txmon_api_regulator, txmon_api_analyst;
GRANT SELECT ON reporting.suspicious_activity, reporting.daily_settlements, reporting.published_partitions,
    reporting.publication_log TO txmon_api_regulator, txmon_api_analyst;
GRANT USAGE ON SCHEMA staging TO txmon_api_analyst;
GRANT SELECT ON staging.transactions TO txmon_api_analyst;

GRANT USAGE ON SCHEMA staging, reporting TO txmon_api_monitor;
GRANT SELECT ON staging.kafka_offsets TO txmon_api_monitor;
GRANT SELECT ON reporting.published_partitions, reporting.publication_log TO txmon_api_monitor;

-- Keyset pagination of /suspicious: a day's rows in (region, transaction_id) order, read from the index.
CREATE INDEX suspicious_activity__event_date__region__transaction_id
    ON reporting.suspicious_activity (event_date, region, transaction_id);
DROP INDEX reporting.suspicious_activity__event_date__region;

-- /metrics reads each (table, region)'s latest publication through this index (a skip scan, not the whole log).
CREATE INDEX publication_log_latest ON reporting.publication_log (table_name, region, publication_id DESC);

-- The API checks at start that each database has every migration, as the other components do.
GRANT USAGE ON SCHEMA txmon TO txmon_api_monitor;
GRANT SELECT ON txmon.schema_migrations TO txmon_api_monitor;
