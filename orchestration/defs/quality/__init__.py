"""Validated marts: asset checks (GX suites, reconciliations, freshness) and the `reporting`
copies published only when they pass (write-audit-publish)."""

from dagster import Definitions

from orchestration.defs.quality.checks import (
    freshness_checks,
    freshness_sensor,
    kafka_offsets_accounted_check,
    offset_audit_job,
    offset_audit_schedule,
    partition_checks,
)
from orchestration.defs.quality.reporting import audit_publish_job, reporting_assets

defs = Definitions(
    assets=reporting_assets,
    asset_checks=[*partition_checks, kafka_offsets_accounted_check, *freshness_checks],
    sensors=[freshness_sensor],
    jobs=[offset_audit_job, audit_publish_job],
    schedules=[offset_audit_schedule],
)
