-- work_mem of the transformation role's sessions (dbt's models and tests, the reconciliations): a
-- region-day's sort by transaction (10M events: about 1.5 GB) otherwise spills to disk in small runs.
-- A setting of the role, so every way it connects gets it (it was a client option before).
ALTER ROLE txmon_transform SET work_mem = '256MB';
