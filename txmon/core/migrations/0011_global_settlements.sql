-- Every region's published daily settlements, aggregates only (no transaction or account
-- identifier), read from the home database: what may cross regions. Written by publication each time
-- a region publishes a settlements partition (the region's rows replaced in one transaction), and
-- checked against that region's reporting.daily_settlements. Declared in every database; only the
-- home database's is written.
CREATE TABLE reporting.global_daily_settlements (
    settlement_date   date           NOT NULL,
    region            text           NOT NULL,
    currency          text           NOT NULL,
    transaction_count bigint         NOT NULL,
    settled_count     bigint         NOT NULL,
    settled_volume    numeric(20, 4) NOT NULL,
    published_at      timestamptz    NOT NULL DEFAULT statement_timestamp(),
    PRIMARY KEY (settlement_date, region, currency)
);
COMMENT ON TABLE reporting.global_daily_settlements IS
    'Each region''s published daily settlements (aggregates only), rolled up in the home database.';
ALTER TABLE reporting.global_daily_settlements OWNER TO txmon_publish;
GRANT SELECT ON reporting.global_daily_settlements TO bi_reader, txmon_transform;
