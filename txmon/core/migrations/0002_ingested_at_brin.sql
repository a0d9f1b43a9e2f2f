-- Lets the marts find what landed since their last run in a day's partition cheaply:
-- ingested_at grows with the physical order of each partition, which is what BRIN is for.
CREATE INDEX transactions_ingested_at_brin ON staging.transactions USING brin (ingested_at) WITH (pages_per_range = 16);
