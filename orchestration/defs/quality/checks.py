"""Asset checks beyond dbt's tests: the Great Expectations suites and the reconciliations
(txmon/quality.py), per region x day partition, with GX's statistics and failing values as
metadata; blocking, so a failure stops the partition's publication to `reporting`. Plus freshness
checks on staging and the marts."""

from datetime import timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    AutomationCondition,
    DefaultScheduleStatus,
    ScheduleDefinition,
    asset_check,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
    define_asset_job,
)

from orchestration.defs.dbt.assets import CLOSED_DAYS
from orchestration.defs.ingestion.assets import STAGING_TRANSACTIONS
from orchestration.partitions import parse_partition_key, region_day_partitions
from orchestration.resources import TxmonResource
from txmon.config import Settings
from txmon.quality import MART_CHECKS, STAGING_CHECKS, CheckOutcome, kafka_offsets_accounted, run_check

SETTINGS = Settings.from_env()
PARTITIONS = region_day_partitions(SETTINGS)

DESCRIPTIONS = {
    "gx_staging_transactions": "GX suite: not-null keys, amount > 0, currency and region in the configured sets, "
    "event_time not beyond the allowed clock skew in the future.",
    "gx_suspicious_activity": "GX suite: not-null columns, one row per transaction, positive amounts, "
    "configured currencies and regions.",
    "gx_daily_settlements": "GX suite: one row per grain, non-negative counts and volumes, "
    "settled_count <= transaction_count.",
    "suspicious_in_staging": "Reconciliation: every suspicious transaction is an event landed in staging.",
    "suspicious_complete": "Reconciliation: every staging transaction whose latest state is over the threshold "
    "or that the fraud screen flagged is in the mart (the rules recounted from staging).",
    "staging_events_unique": "Reconciliation: each event identity (transaction_id, status) is stored once, "
    "whatever its time or amount (every row is the one its identity points at).",
    "settlements_reconcile_with_staging": "Reconciliation: counts and settled volume per currency equal a direct "
    "aggregate of the latest events in staging, to the cent.",
}


def check_result(outcome: CheckOutcome) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity.ERROR,
        description=outcome.summary,
        metadata={"summary": outcome.summary, **outcome.metadata},
    )


def partition_check(asset_key: AssetKey, name: str):
    @asset_check(
        asset=asset_key,
        name=name,
        blocking=True,
        description=DESCRIPTIONS[name],
        partitions_def=PARTITIONS,
        # Closed days: with the mart partition when automation rebuilds it (same tick, same run), and
        # for staging when late data lands. The open day is checked by the open_day_marts sensor.
        automation_condition=AutomationCondition.any_deps_updated() & CLOSED_DAYS,
    )
    def _check(context: AssetCheckExecutionContext, txmon: TxmonResource) -> AssetCheckResult:
        day, region = parse_partition_key(context.partition_key)
        return check_result(run_check(txmon.settings(), name, day, region))

    return _check


@asset_check(
    asset=STAGING_TRANSACTIONS,
    name="kafka_offsets_accounted",
    # Global (not per partition): run by the offset_audit schedule.
    description="Reconciliation: every consumed Kafka offset is landed, a duplicate or quarantined "
    "(audited incrementally from where the last audit stopped), and the stored positions belong to the topic "
    "as it is now (same cluster and topic id, none past its end or before its first offset).",
)
def kafka_offsets_accounted_check(txmon: TxmonResource) -> AssetCheckResult:
    return check_result(kafka_offsets_accounted(txmon.settings()))


partition_checks = [partition_check(STAGING_TRANSACTIONS, name) for name in STAGING_CHECKS] + [
    partition_check(AssetKey(["marts", table]), name) for table, names in MART_CHECKS.items() for name in names
]

MARTS = [AssetKey(["marts", table]) for table in MART_CHECKS]
freshness_checks = [
    *build_last_update_freshness_checks(
        assets=[STAGING_TRANSACTIONS], lower_bound_delta=timedelta(minutes=SETTINGS.staging_freshness_minutes)
    ),
    *build_last_update_freshness_checks(
        assets=MARTS, lower_bound_delta=timedelta(minutes=SETTINGS.marts_freshness_minutes)
    ),
]
freshness_sensor = build_sensor_for_freshness_checks(
    freshness_checks=freshness_checks, name="freshness_checks", minimum_interval_seconds=60
)
CHECK_SELECTION = AssetSelection.checks(*partition_checks)

offset_audit_job = define_asset_job(
    "offset_audit", selection=AssetSelection.checks(kafka_offsets_accounted_check),
    description="Audits the Kafka offsets consumed since the last audit.",
)
offset_audit_schedule = ScheduleDefinition(
    name="offset_audit", cron_schedule="*/15 * * * *", job=offset_audit_job,
    default_status=DefaultScheduleStatus.RUNNING, execution_timezone="UTC",
)
