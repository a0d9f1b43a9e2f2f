"""The code location's definitions by domain (ingestion, dbt, quality, maintenance): each package's `build()`
returns its own; orchestration/definitions.py merges them."""
