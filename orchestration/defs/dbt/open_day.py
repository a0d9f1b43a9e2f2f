"""The open day's suspicious activity, refreshed within seconds of landing.

A run per partition costs tens of seconds before any SQL runs (a process, the code location, the
dbt CLI and its re-parse), so the day still open is not refreshed by runs: every few seconds the
`open_day_marts` sensor runs dbt in-process (the project parsed once) for each region whose open-day
slice received rows, only for the transactions with new events, and reports the materializations
and dbt test results of those partitions, as a run would. Bounded per tick (well inside the sensor
timeout); a region not reached or failed stays pending in the cursor for the next tick.

Closed days (late events, the settlements after midnight) are refreshed by runs: automation and the
daily_settlements schedule (schedules.py).
"""


import json
import time
from datetime import UTC, date, datetime
from functools import cache

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ingestion.batches import landed_since
from orchestration.defs.dbt.assets import TRANSLATOR, dbt_build_args, dbt_project, partitioned_dbt_models, slice_mode
from orchestration.partitions import partition_key
from orchestration.resources import TxmonResource, skip_while_unreachable
from txmon.config import Settings
from txmon.dbt import InProcessDbt, slice_processed_before
from txmon.quality import MART_CHECKS, CheckOutcome, run_check
from txmon.reporting import NotPublished, publish

# The models of the open day: each transaction's latest state and the suspicious-activity mart.
OPEN_DAY_MODELS = ("int_transactions_latest", "fct_suspicious_activity")
SUSPICIOUS = AssetKey(["marts", "suspicious_activity"])
# No new region is started after this many seconds of a tick (the sensor timeout is 60 s).
TICK_BUDGET_SECONDS = 30


@cache
def _manifest() -> dict:
    return json.loads(dbt_project.manifest_path.read_text())


@cache
def _checks_by_test() -> dict:
    """dbt test unique_id -> the asset check dagster-dbt made of it."""
    return {spec.metadata["dagster_dbt/unique_id"]: spec.key for spec in partitioned_dbt_models.check_specs}


DBT = InProcessDbt()  # one per code server: parses the project on first use


def refresh_events(day: date, region: str, result, mode: str) -> list:
    """The materializations and check evaluations one in-process dbt build reports for its partition."""
    manifest, key = _manifest(), partition_key(day, region)
    events = []
    for node_result in result.results:
        unique_id = node_result.node.unique_id
        props = manifest["nodes"].get(unique_id)
        if props is None:
            continue  # hooks
        status = str(node_result.status)
        if props["resource_type"] == "model" and status == "success":
            events.append(
                AssetMaterialization(
                    asset_key=TRANSLATOR.get_asset_key(props),
                    partition=key,
                    metadata={
                        "rows_affected": (node_result.adapter_response or {}).get("rows_affected"),
                        "execution_seconds": round(node_result.execution_time, 3),
                        "slice_mode": mode,
                        "refreshed_by": "open_day_marts sensor (dbt in-process)",
                        "unique_id": unique_id,
                    },
                )
            )
        elif props["resource_type"] == "test":
            check_key = _checks_by_test().get(unique_id)
            if check_key is None:
                continue
            events.append(
                AssetCheckEvaluation(
                    asset_key=check_key.asset_key,
                    check_name=check_key.name,
                    passed=status == "pass",
                    severity=AssetCheckSeverity.ERROR,
                    # Not partition=: runless evaluations are unique per (check, partition) in
                    # Dagster's storage, so the partition travels in the metadata.
                    metadata={"status": status, "failures": node_result.failures or 0, "partition": str(key)},
                )
            )
    return events


def refresh_open_day(settings: Settings, day: date, region: str) -> tuple[bool, bool, str, list]:
    """Build the open day's models for one region in-process.

    Returns (models built, every node passed, message, events to report)."""
    started = time.monotonic()
    mode = slice_mode(day, day, {}, slice_processed_before(settings, day, region))
    args = [*dbt_build_args(settings, partition_key(day, region), mode), "--select", *OPEN_DAY_MODELS]
    outcome = DBT.invoke(settings, args)
    if outcome.result is None or not hasattr(outcome.result, "results"):
        return False, False, f"dbt failed: {outcome.exception}", []
    events = refresh_events(day, region, outcome.result, mode)
    failed = [r.node.name for r in outcome.result.results if str(r.status) not in ("success", "pass")]
    # Built is built: a failed test is reported (and retried with the next new data), an error is not.
    built = all(str(r.status) == "success" for r in outcome.result.results if r.node.resource_type == "model")
    message = f"{mode} refresh in {time.monotonic() - started:.1f}s"
    if not outcome.success:
        message += f", failed: {', '.join(failed)}"
    return built, outcome.success, message, events


def audit_and_publish(settings: Settings, day: date, region: str, dbt_events: list) -> tuple[list, str]:
    """Write-audit-publish of the open day's suspicious activity: the mart's own checks (GX suite,
    reconciliation) after its dbt tests, then the copy to reporting if all of them passed."""
    key = partition_key(day, region)
    outcomes = [
        CheckOutcome(e.check_name, e.passed, f"{e.asset_key.to_user_string()}: dbt test")
        for e in dbt_events
        if isinstance(e, AssetCheckEvaluation)
    ]
    events = []
    for name in MART_CHECKS["suspicious_activity"]:
        outcome = run_check(settings, name, day, region)
        outcomes.append(outcome)
        events.append(
            AssetCheckEvaluation(
                asset_key=SUSPICIOUS,
                check_name=name,
                passed=outcome.passed,
                severity=AssetCheckSeverity.ERROR,
                description=outcome.summary,
                metadata={"partition": str(key), "summary": outcome.summary, **outcome.metadata},
            )
        )
    run_id = f"sensor open_day_marts {datetime.now(UTC).isoformat(timespec='seconds')}"
    try:
        published = publish(settings, "suspicious_activity", day, region, run_id, outcomes)
    except NotPublished as exc:
        return events, f"not published ({exc})"
    events.append(
        AssetMaterialization(
            asset_key=AssetKey(["reporting", "suspicious_activity"]),
            partition=key,
            metadata={"rows": published.rows, "checks_passed": len(outcomes), "run_id": run_id},
        )
    )
    return events, f"published {published.rows} rows"


def _cursor(raw: str | None, today: date) -> dict:
    cursor = json.loads(raw) if raw else {}
    pending = cursor.get("pending", []) if cursor.get("day") == today.isoformat() else []
    return {"day": today.isoformat(), "batches": cursor.get("batches", {}), "pending": pending}


@sensor(
    name="open_day_marts",
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Refreshes today's int_transactions_latest and suspicious_activity partitions in-process, "
        "seconds after their staging slices receive rows, checks them (dbt tests, GX suite, "
        "reconciliation), publishes them to reporting when every check passed, and reports it all."
    ),
)
@skip_while_unreachable
def open_day_marts_sensor(context: SensorEvaluationContext, txmon: TxmonResource):
    settings = txmon.settings()
    today = datetime.now(UTC).date()
    cursor = _cursor(context.cursor, today)
    landed = landed_since(settings, cursor["batches"])
    pending = [r for r in settings.regions if r in cursor["pending"] or landed.slices.get(f"{today}|{r}")]
    if not pending:
        return SkipReason("nothing new landed for the open day")
    events, started = [], time.monotonic()
    done, passed, messages = [], [], {}
    # Every pending region's models first (the mart rows appear), then their checks and publication.
    for region in pending:
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            break
        built, success, messages[region], region_events = refresh_open_day(settings, today, region)
        events += region_events
        if built:
            done.append(region)
        if success:
            passed.append((region, region_events))
    for region, region_events in passed:
        checked = time.monotonic()
        published, note = audit_and_publish(settings, today, region, region_events)
        events += published
        messages[region] += f"; {note} ({time.monotonic() - checked:.1f}s)"
    for region, message in messages.items():
        context.log.info(f"{today}|{region}: {message}")
    cursor.update(batches=landed.cursor, pending=[r for r in pending if r not in done])
    return SensorResult(asset_events=events, cursor=json.dumps(cursor, sort_keys=True))
