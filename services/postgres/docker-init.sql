-- For docker compose only: the official image creates the warehouse database (POSTGRES_DB);
-- Dagster's own storage gets its own database. `txmon services up` does the same locally.
CREATE DATABASE dagster;
