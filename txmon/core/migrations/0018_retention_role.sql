-- Retention as its own role. The ingest role parses untrusted input: it may add to the audit evidence (the
-- quarantine, the duplicates, the batch log, the verbatim copies) and never take any away. txmon_retention, the
-- login of the prune job alone (`txmon prune` and the daily prune_dagster_history job), deletes what is past its
-- age (txmon/core/retention.py) and can do nothing else: it reads only what its deletes match on.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'txmon_retention') THEN
        CREATE ROLE txmon_retention NOLOGIN;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'txmon_retention'
               AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)) THEN
        ALTER ROLE txmon_retention NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO txmon_retention', current_database());
END
$$;
ALTER ROLE txmon_retention SET lock_timeout = '5s';
ALTER ROLE txmon_retention SET statement_timeout = '120s';

GRANT USAGE ON SCHEMA staging TO txmon_retention;
GRANT SELECT, DELETE ON staging.raw_events, staging.rejected_transactions, staging.duplicate_transactions,
    staging.ingest_batches TO txmon_retention;
GRANT SELECT ON staging.offset_audit TO txmon_retention;  -- how far the offset audit verified
GRANT USAGE ON SCHEMA txmon TO txmon_retention;
GRANT SELECT ON txmon.schema_migrations TO txmon_retention;

-- The ingest role: INSERT and SELECT where it lands, UPDATE of its positions alone; no DELETE or TRUNCATE
-- anywhere, and the audit's progress is none of its business.
REVOKE DELETE, TRUNCATE ON ALL TABLES IN SCHEMA staging FROM txmon_ingest;
REVOKE UPDATE ON staging.transactions, staging.event_identities, staging.duplicate_transactions,
    staging.rejected_transactions, staging.ingest_batches, staging.raw_events, staging.offset_audit FROM txmon_ingest;
REVOKE ALL ON staging.offset_audit FROM txmon_ingest;
