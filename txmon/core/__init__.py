"""The bottom layer: settings, credentials, connections, Kafka clients, migrations, the dbt runner.
Everything above (ingestion, quality, orchestration, the CLI) builds on it; it imports none of them."""
