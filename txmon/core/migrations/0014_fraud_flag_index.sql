-- The flagged events of a lifecycle window, found without reading the window: int_transactions_latest's full rebuild of
-- a slice joins the transactions flagged up to the window before it (the sticky fraud flag). About 0.5% of events
-- are flagged, so this index stays small and costs the landing little.
CREATE INDEX transactions_fraud_flagged ON staging.transactions (event_time) WHERE fraud_flag;
