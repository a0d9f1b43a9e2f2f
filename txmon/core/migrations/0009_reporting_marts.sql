-- The published marts, declared here like every other table of txmon's own (the marts themselves are
-- dbt's models). Their columns are the marts' columns (dbt_project/models/marts/): a mart that gains
-- a column needs a migration that adds it here too; until then publication refuses to copy the mart
-- and names the missing column. Databases where publication created these tables (0.6.0 and
-- earlier, `LIKE` the mart) already have them with these columns.
CREATE TABLE IF NOT EXISTS reporting.suspicious_activity (
    transaction_id  text,
    account_id      text,
    counterparty_id text,
    region          text,
    amount          numeric(16, 4),
    currency        text,
    amount_usd      numeric,
    threshold_usd   numeric,
    status          text,
    event_time      timestamptz,
    event_date      date,
    reasons         text[],
    refreshed_at    timestamptz
);
CREATE INDEX IF NOT EXISTS suspicious_activity__event_date__region
    ON reporting.suspicious_activity (event_date, region);
COMMENT ON TABLE reporting.suspicious_activity IS
    'Published marts.suspicious_activity partitions (event_date, region) whose checks all passed.';

CREATE TABLE IF NOT EXISTS reporting.daily_settlements (
    settlement_date   date,
    region            text,
    currency          text,
    transaction_count bigint,
    settled_count     bigint,
    settled_volume    numeric(20, 4)
);
CREATE INDEX IF NOT EXISTS daily_settlements__settlement_date__region
    ON reporting.daily_settlements (settlement_date, region);
COMMENT ON TABLE reporting.daily_settlements IS
    'Published marts.daily_settlements partitions (settlement_date, region) whose checks all passed.';

-- Written by the publication role only (it replaces a partition: delete + insert), as before.
ALTER TABLE reporting.suspicious_activity OWNER TO txmon_publish;
ALTER TABLE reporting.daily_settlements OWNER TO txmon_publish;
GRANT SELECT ON reporting.suspicious_activity, reporting.daily_settlements TO bi_reader;
