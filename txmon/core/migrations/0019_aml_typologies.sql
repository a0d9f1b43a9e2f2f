-- The AML typologies (structuring, velocity; docs/rules.md). Their parameters by region, each version with the time it
-- takes effect, so a day rebuilt later is judged by the parameters in force then: written by the state's merge (dbt
-- macro record_rule_parameters, as the transformation role) when TXMON_RULES differs from the latest version. The first
-- version of a region takes effect from the beginning ('-infinity'); a change, from the merge that recorded it.
CREATE TABLE intermediate.rule_parameters (
    region                       text        NOT NULL,
    effective_from               timestamptz NOT NULL,
    structuring_min_ratio        numeric     NOT NULL CHECK (structuring_min_ratio > 0 AND structuring_min_ratio <= 1),
    structuring_min_transactions integer     NOT NULL CHECK (structuring_min_transactions >= 2),
    structuring_window_hours     integer     NOT NULL CHECK (structuring_window_hours BETWEEN 1 AND 168),
    velocity_max_transactions    integer     NOT NULL CHECK (velocity_max_transactions >= 1),
    velocity_window_minutes      integer     NOT NULL CHECK (velocity_window_minutes BETWEEN 1 AND 1440),
    recorded_at                  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (region, effective_from)
);
COMMENT ON TABLE intermediate.rule_parameters IS
    'The AML typologies'' parameters by region, each version from the time it takes effect (TXMON_RULES).';
ALTER TABLE intermediate.rule_parameters OWNER TO txmon_transform;
GRANT SELECT ON intermediate.rule_parameters TO txmon_publish;

-- Why a structuring or velocity row fired: its group's transaction ids and totals (the mart's column, published).
ALTER TABLE reporting.suspicious_activity ADD COLUMN IF NOT EXISTS evidence jsonb;
COMMENT ON COLUMN reporting.suspicious_activity.evidence IS
    'Per AML typology that fired (structuring, velocity): the group''s transaction ids, count, totals and parameters.';
