-- Roles by duty. Each component connects as its own role and can do its job and nothing more
-- (tests/integration/test_roles.py proves both). The roles are the cluster's; their passwords are set
-- by `txmon migrate` from the secrets (txmon/credentials.py). The admin role (the one running this)
-- keeps the schemas, the migrations and the publication log.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['txmon_ingest', 'txmon_transform', 'txmon_publish', 'txmon_dagster', 'bi_reader'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
        -- No role by duty may create roles or databases, bypass row security or replicate.
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = name
                   AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)) THEN
            EXECUTE format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', name);
        END IF;
    END LOOP;
END
$$;

-- Nothing is granted to PUBLIC: a role reaches this database and its schemas only by a grant below.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO txmon_ingest, txmon_transform, txmon_publish, bi_reader',
                   current_database());
    -- The ingest sink stages each batch in a temporary table; dbt's incremental models build in one.
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO txmon_ingest, txmon_transform', current_database());
END
$$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA staging FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
-- Advisory locks serialise txmon's own work (a slice's refresh, a day's partition): no other role
-- may take one and hold a refresh up.
REVOKE EXECUTE ON FUNCTION pg_advisory_lock(bigint), pg_advisory_lock(integer, integer),
    pg_advisory_xact_lock(bigint), pg_advisory_xact_lock(integer, integer),
    pg_try_advisory_lock(bigint), pg_try_advisory_lock(integer, integer),
    pg_try_advisory_xact_lock(bigint), pg_try_advisory_xact_lock(integer, integer),
    pg_advisory_lock_shared(bigint), pg_advisory_xact_lock_shared(bigint),
    pg_try_advisory_lock_shared(bigint), pg_try_advisory_xact_lock_shared(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_advisory_lock(bigint), pg_advisory_xact_lock(bigint), pg_try_advisory_lock(bigint)
    TO txmon_transform;

-- Ingestion: lands events and its own bookkeeping in staging; reads nothing else.
GRANT USAGE ON SCHEMA staging TO txmon_ingest;
GRANT SELECT, INSERT ON staging.transactions, staging.event_identities, staging.duplicate_transactions,
    staging.rejected_transactions, staging.ingest_batches TO txmon_ingest;
GRANT SELECT, INSERT, UPDATE ON staging.kafka_offsets TO txmon_ingest;
-- A new day's partition is created by the function, as its owner: the ingest role creates no table.
-- Its body names every object with its schema; the search path holds nothing another role can write.
ALTER FUNCTION staging.ensure_transactions_partition(date) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
GRANT EXECUTE ON FUNCTION staging.ensure_transactions_partition(date) TO txmon_ingest;

-- Transformation (dbt) and the checks: read staging (no write, no CREATE there), own the schemas dbt
-- builds in (stg for its staging view, intermediate, marts, reference), record the Kafka offset audit.
GRANT USAGE ON SCHEMA staging TO txmon_transform;
GRANT SELECT ON ALL TABLES IN SCHEMA staging TO txmon_transform;
ALTER DEFAULT PRIVILEGES IN SCHEMA staging GRANT SELECT ON TABLES TO txmon_transform;
GRANT INSERT, UPDATE ON staging.offset_audit TO txmon_transform;
-- dbt's staging view lived in staging before; it is rebuilt in stg.
DROP VIEW IF EXISTS staging.stg_transactions;
CREATE SCHEMA IF NOT EXISTS stg;
CREATE SCHEMA IF NOT EXISTS intermediate;
CREATE SCHEMA IF NOT EXISTS marts;
CREATE SCHEMA IF NOT EXISTS reference;
ALTER SCHEMA stg OWNER TO txmon_transform;
ALTER SCHEMA intermediate OWNER TO txmon_transform;
ALTER SCHEMA marts OWNER TO txmon_transform;
ALTER SCHEMA reference OWNER TO txmon_transform;
-- Relations dbt built before the roles existed (as the admin) become the transform role's.
DO $$
DECLARE
    rel record;
BEGIN
    FOR rel IN
        SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('intermediate', 'marts', 'reference')
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND NOT c.relispartition
    LOOP
        EXECUTE format('ALTER %s %I.%I OWNER TO txmon_transform',
                       CASE rel.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                        WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                       rel.nspname, rel.relname);
    END LOOP;
END
$$;

-- Publication: reads the marts, writes reporting (creates its tables, shaped like the marts).
GRANT USAGE ON SCHEMA marts TO txmon_publish;
GRANT SELECT ON ALL TABLES IN SCHEMA marts TO txmon_publish;
ALTER DEFAULT PRIVILEGES FOR ROLE txmon_transform IN SCHEMA marts GRANT SELECT ON TABLES TO txmon_publish;
GRANT USAGE, CREATE ON SCHEMA reporting TO txmon_publish;
GRANT USAGE ON SCHEMA reporting TO txmon_transform;
DO $$
DECLARE
    rel record;
BEGIN
    FOR rel IN
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'reporting' AND c.relkind IN ('r', 'p') AND c.relname <> 'published_partitions'
    LOOP
        EXECUTE format('ALTER TABLE reporting.%I OWNER TO txmon_publish', rel.relname);
    END LOOP;
END
$$;

-- bi_reader: the published tables only, read-only. default_transaction_read_only is a convenience
-- (the role may SET it off); what makes it read-only is that it holds no write privilege anywhere,
-- no TEMPORARY and no CREATE.
ALTER DEFAULT PRIVILEGES FOR ROLE txmon_publish IN SCHEMA reporting GRANT SELECT ON TABLES TO bi_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO bi_reader;

-- Every role may see which migrations were applied (a worker refuses a database that is behind).
GRANT USAGE ON SCHEMA txmon TO txmon_ingest, txmon_transform, txmon_publish;
GRANT SELECT ON txmon.schema_migrations TO txmon_ingest, txmon_transform, txmon_publish;
