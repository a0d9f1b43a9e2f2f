"""Kafka -> PostgreSQL ingestion: consume the topic, validate each event against the contract, land it in
staging.transactions exactly once with its offsets (or quarantine it); lag and landed-batch reports."""
