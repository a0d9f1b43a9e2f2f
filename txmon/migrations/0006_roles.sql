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
        EXECUTE format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', name);
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

-- Ingestion: lands events and its own bookkeeping in staging; reads nothing else.
GRANT USAGE ON SCHEMA staging TO txmon_ingest;
GRANT SELECT, INSERT ON staging.transactions, staging.event_identities, staging.duplicate_transactions,
    staging.rejected_transactions, staging.ingest_batches TO txmon_ingest;
GRANT SELECT, INSERT, UPDATE ON staging.kafka_offsets TO txmon_ingest;
-- A new day's partition is created by the function, as its owner: the ingest role creates no table.
ALTER FUNCTION staging.ensure_transactions_partition(date) SECURITY DEFINER SET search_path = pg_catalog, staging;
GRANT EXECUTE ON FUNCTION staging.ensure_transactions_partition(date) TO txmon_ingest;

-- Transformation (dbt) and the checks: read staging, own intermediate, marts and reference (dbt
-- creates and replaces their relations), record the Kafka offset audit. The staging view dbt builds
-- (staging.stg_transactions) is the role's own: CREATE on staging lets it replace its view, never
-- write a table it does not own.
GRANT USAGE, CREATE ON SCHEMA staging TO txmon_transform;
GRANT SELECT ON ALL TABLES IN SCHEMA staging TO txmon_transform;
ALTER DEFAULT PRIVILEGES IN SCHEMA staging GRANT SELECT ON TABLES TO txmon_transform;
GRANT INSERT, UPDATE ON staging.offset_audit TO txmon_transform;
CREATE SCHEMA IF NOT EXISTS intermediate;
CREATE SCHEMA IF NOT EXISTS marts;
CREATE SCHEMA IF NOT EXISTS reference;
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
        WHERE (n.nspname IN ('intermediate', 'marts', 'reference') OR (n.nspname = 'staging' AND c.relkind = 'v'))
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
