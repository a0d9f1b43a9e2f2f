"""Checks beyond a partition's refresh: the Kafka offset audit (global, every 15 minutes). The
partition checks (dbt tests, GX suites, reconciliations) are part of the region_day refresh
(orchestration/defs/dbt); freshness is a FreshnessPolicy on each asset."""

from dagster import Definitions

from orchestration.defs.quality.checks import kafka_offsets_accounted_check, offset_audit_job, offset_audit_schedule


def build() -> Definitions:
    return Definitions(
        asset_checks=[kafka_offsets_accounted_check],
        jobs=[offset_audit_job],
        schedules=[offset_audit_schedule],
    )
