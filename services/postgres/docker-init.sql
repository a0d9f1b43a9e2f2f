-- For docker compose only: the official image creates the warehouse database (POSTGRES_DB);
-- Dagster's own storage gets its own database. `txmon services up` does the same locally.
-- Only the database: txmon's set-up gives it to the txmon_dagster role and creates the roles
-- (with their passwords from the secrets), not this script.
CREATE DATABASE dagster;
