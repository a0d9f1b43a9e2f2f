"""The Kafka offset audit: every consumed offset is landed, a duplicate or quarantined, and the
stored positions belong to the topic as it is now (txmon/quality/reconciliations.py)."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    asset_check,
    define_asset_job,
)

from orchestration.defs.ingestion.assets import STAGING_TRANSACTIONS
from orchestration.resources import TxmonResource
from txmon.quality.reconciliations import kafka_offsets_accounted


@asset_check(
    asset=STAGING_TRANSACTIONS,
    name="kafka_offsets_accounted",
    # Global (not per partition): run by the offset_audit schedule.
    description="Reconciliation: every consumed Kafka offset is landed, a duplicate or quarantined "
    "(audited incrementally from where the last audit stopped), and the stored positions belong to the topic "
    "as it is now (same cluster and topic id, none past its end or before its first offset).",
)
def kafka_offsets_accounted_check(txmon: TxmonResource) -> AssetCheckResult:
    outcome = kafka_offsets_accounted(txmon.settings())
    return AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity.ERROR,
        description=outcome.summary,
        metadata={"summary": outcome.summary, **outcome.metadata},
    )


offset_audit_job = define_asset_job(
    "offset_audit",
    selection=AssetSelection.checks(kafka_offsets_accounted_check),
    description="Audits the Kafka offsets consumed since the last audit.",
)
offset_audit_schedule = ScheduleDefinition(
    name="offset_audit",
    cron_schedule="*/15 * * * *",
    job=offset_audit_job,
    default_status=DefaultScheduleStatus.RUNNING,
    execution_timezone="UTC",
)
