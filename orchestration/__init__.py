"""Dagster orchestration: the code location (definitions.py merging defs/), its resources, region x day partitions
and instance, and the runner behind `txmon materialize` and `txmon backfill`."""
