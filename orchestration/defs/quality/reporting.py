"""The published copies in `reporting` (write-audit-publish): one asset per mart, partitioned like
it, materialized after the mart partition and its checks only if every check of the run passed."""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DagsterEventType,
    Failure,
    MaterializeResult,
    asset,
    define_asset_job,
)

from orchestration.defs.dbt.assets import CLOSED_DAYS, on_new_data
from orchestration.defs.quality.checks import CHECK_SELECTION, PARTITIONS
from orchestration.partitions import parse_partition_key
from orchestration.resources import TxmonResource
from txmon.quality import MART_CHECKS, CheckOutcome
from txmon.reporting import NotPublished, publish


def run_check_outcomes(context: AssetExecutionContext) -> list[CheckOutcome]:
    """Every asset check evaluated in this run (dbt tests, GX suites, reconciliations)."""
    records = context.instance.get_records_for_run(
        run_id=context.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION, limit=10_000
    ).records
    outcomes = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        outcomes.append(
            CheckOutcome(
                name=evaluation.check_name,
                passed=evaluation.passed,
                summary=f"{evaluation.asset_key.to_user_string()}: {'passed' if evaluation.passed else 'failed'}",
            )
        )
    return outcomes


def reporting_asset(table: str):
    mart = AssetKey(["marts", table])

    @asset(
        key=AssetKey(["reporting", table]),
        deps=[mart],
        partitions_def=PARTITIONS,
        group_name="reporting",
        kinds={"postgres"},
        automation_condition=on_new_data(mart) & CLOSED_DAYS,
        description=(
            f"reporting.{table}: the partitions of marts.{table} that passed every check of their run "
            "(dbt tests, GX suites, reconciliations), replaced atomically; what regulators and BI tools read."
        ),
    )
    def _publish(context: AssetExecutionContext, txmon: TxmonResource) -> MaterializeResult:
        day, region = parse_partition_key(context.partition_key)
        outcomes = run_check_outcomes(context)
        # The mart's own checks must have run (and everything that ran, staging's suite included, passed).
        missing = set(MART_CHECKS[table]) - {o.name for o in outcomes}
        if missing:
            raise Failure(f"not published: checks not run in this run: {', '.join(sorted(missing))}")
        try:
            published = publish(txmon.settings(), table, day, region, context.run_id, outcomes)
        except NotPublished as exc:
            raise Failure(str(exc)) from None
        return MaterializeResult(
            metadata={"rows": published.rows, "checks_passed": len(outcomes), "run_id": context.run_id}
        )

    return _publish


reporting_assets = [reporting_asset(table) for table in MART_CHECKS]


# Re-audit and publish the marts' current partitions without rebuilding them (after a fix, or to
# see today's checks): the mart and staging checks, then the publication if they pass.
audit_publish_job = define_asset_job(
    "audit_publish",
    selection=AssetSelection.assets(*reporting_assets) | CHECK_SELECTION,
    description="Checks the current mart partition (GX suites, reconciliations) and publishes it if they pass.",
)
