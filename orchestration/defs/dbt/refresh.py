"""The live refresh: partitions that received data are rebuilt, checked and published by themselves,
the open day and closed days (late data) alike."""
# Every 5 s the `marts_refresh` sensor collects the region x day partitions that need a refresh: the staging slices that
# received rows (from staging.ingest_batches) and the slices a neighbouring slice's refresh marked
# (intermediate.slice_dirty: a later event superseded their latest state). When no refresh run is in flight it launches
# one run of `refresh_partitions` for all of them: the in-process executor, the code location and dbt's project loaded
# once, each partition through txmon.quality.refresh (rebuild from its watermark -> every check -> publication).
# Partitions of a run that failed are requested again, at most MAX_ATTEMPTS times until new data lands for them.
#
# The same job refreshes yesterday's partitions after midnight (daily_settlements schedule, the settlements included now
# that the day has closed) and is what `txmon backfill` runs.

import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetMaterialization,
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Failure,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    in_process_executor,
    job,
    op,
    schedule,
    sensor,
)

from ingestion.batches import landed_since
from orchestration.defs.dbt.assets import DBT, launched_by, refresh_records
from orchestration.partitions import parse_partition_key, partition_key
from orchestration.resources import TxmonResource, skip_while_unreachable
from txmon.core.db import connect
from txmon.core.settings import Role, Settings
from txmon.quality.refresh import refresh_slice

JOB = "refresh_partitions"
PIPELINE_TAG = {"txmon/pipeline": "refresh"}
MAX_ATTEMPTS = 3
LAUNCH_TIMEOUT_SECONDS = 120  # a requested run not recorded by then is requested again
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


class RefreshConfig(Config):
    partitions: list[str]  # "2026-11-24|EU"
    full: bool = False  # rebuild each slice fully instead of from its watermark


def refresh_job_def(manifest: dict, check_specs: list[AssetCheckSpec]):
    @op(name="refresh", description="Rebuild -> checks -> publish, for each partition of the run's config.")
    def refresh_op(context: OpExecutionContext, config: RefreshConfig, txmon: TxmonResource) -> None:
        settings = txmon.settings()
        failed = []
        for key in config.partitions:
            day, region = parse_partition_key(key)
            outcome = refresh_slice(
                settings,
                DBT,
                manifest,
                day,
                region,
                run_id=context.run_id,
                full=config.full,
                launched_by=launched_by(context.run.tags),
            )
            context.log.info(outcome.line())
            materialized, checks = refresh_records(outcome, check_specs)
            for asset_key, metadata in materialized:
                context.log_event(AssetMaterialization(asset_key=asset_key, partition=key, metadata=metadata))
            for asset_key, name, passed, description, metadata in checks:
                context.log_event(
                    AssetCheckEvaluation(
                        asset_key=asset_key,
                        check_name=name,
                        passed=passed,
                        severity=AssetCheckSeverity.ERROR,
                        description=description,
                        metadata=metadata,
                        partition=key,
                    )
                )
            if not outcome.ok:
                failed.append(f"{key}: {outcome.error or 'checks failed: ' + ', '.join(outcome.failed_checks)}")
        if failed:
            raise Failure(f"{len(failed)} of {len(config.partitions)} partitions not published: {'; '.join(failed)}")

    @job(
        name=JOB,
        executor_def=in_process_executor,
        tags=PIPELINE_TAG,
        description="Refreshes the region x day partitions of its config, one after another, in one process.",
    )
    def refresh_partitions():
        refresh_op()

    return refresh_partitions


def run_config(partitions: list[str], full: bool = False) -> dict:
    return {"ops": {"refresh": {"config": {"partitions": partitions, "full": full}}}}


def marked_slices(settings: Settings) -> set[str]:
    """Slices that a neighbour's refresh marked for their next one."""
    marked = set()
    for dsn in settings.databases():
        with connect(settings.as_role(dsn, Role.TRANSFORM), autocommit=True, purpose="report") as conn:
            rows = conn.execute("SELECT DISTINCT slice_date, region FROM intermediate.slice_dirty").fetchall()
        marked |= {f"{day.isoformat()}|{region}" for day, region in rows}
    return marked


def in_partitions(settings: Settings, key: str, today: date) -> bool:
    day, region = parse_partition_key(key)
    return settings.partitions_start_date <= day <= today and region in settings.regions


def _cursor(raw: str | None) -> dict:
    cursor = json.loads(raw) if raw else {}
    return {
        "batches": cursor.get("batches", {}),
        "pending": cursor.get("pending", []),
        "attempts": cursor.get("attempts", {}),
        "last": cursor.get("last"),
    }


def refresh_sensor_def():
    @sensor(
        name="marts_refresh",
        job_name=JOB,
        minimum_interval_seconds=5,
        default_status=DefaultSensorStatus.RUNNING,
        description="Every 5 s: one refresh_partitions run for every region x day partition that received data "
        "(open day and late data alike) or that a neighbouring slice's refresh marked, when none is in flight.",
    )
    @skip_while_unreachable
    def marts_refresh(context: SensorEvaluationContext, txmon: TxmonResource):
        settings = txmon.settings()
        today = datetime.now(UTC).date()
        cursor = _cursor(context.cursor)
        landed = landed_since(settings, cursor["batches"])
        fresh = {k for k in landed.slices if in_partitions(settings, k, today)}
        pending = set(cursor["pending"]) | fresh
        attempts = {k: n for k, n in cursor["attempts"].items() if k not in fresh}  # new data: try again
        in_flight = context.instance.get_runs(RunsFilter(job_name=JOB, statuses=IN_FLIGHT), limit=1)
        last = cursor["last"]
        if last and not in_flight:
            runs = context.instance.get_runs(RunsFilter(tags={"dagster/run_key": last["run_key"]}), limit=1)
            if runs and runs[0].status == DagsterRunStatus.SUCCESS:
                attempts = {k: n for k, n in attempts.items() if k not in last["partitions"]}
                last = None
            elif runs or time.time() - last["at"] > LAUNCH_TIMEOUT_SECONDS:  # failed, canceled or never launched
                pending |= set(last["partitions"])
                last = None
        if not in_flight and not last:  # read when launching: a run in flight may be clearing them
            pending |= {k for k in marked_slices(settings) if in_partitions(settings, k, today)}
        todo = sorted(k for k in pending if attempts.get(k, 0) < MAX_ATTEMPTS)
        given_up = sorted(pending - set(todo))
        if given_up:
            context.log.warning(
                f"not requested again after {MAX_ATTEMPTS} failed runs (until new data lands): {', '.join(given_up)}"
            )
        state = {"batches": landed.cursor, "attempts": attempts}
        if in_flight or last or not todo:
            reason = (
                f"refresh run {in_flight[0].run_id} in flight; {len(todo)} partitions wait"
                if in_flight
                else "the last refresh run is not recorded yet"
                if last
                else "no partition needs a refresh"
            )
            return SensorResult(skip_reason=reason, cursor=json.dumps({**state, "pending": todo, "last": last}))
        run_key = f"refresh-{uuid.uuid4().hex[:12]}"
        for key in todo:
            attempts[key] = attempts.get(key, 0) + 1
        request = RunRequest(
            run_key=run_key,
            run_config=run_config(todo),
            tags={**PIPELINE_TAG, "txmon/partitions": ",".join(todo)[:4000]},
        )
        state.update(attempts=attempts, pending=[], last={"run_key": run_key, "partitions": todo, "at": time.time()})
        return SensorResult(run_requests=[request], cursor=json.dumps(state, sort_keys=True))

    return marts_refresh


def yesterday_schedule_def():
    @schedule(
        name="daily_settlements",
        cron_schedule="15 0 * * *",
        execution_timezone="UTC",
        job_name=JOB,
        default_status=DefaultScheduleStatus.RUNNING,
        description="At 00:15 UTC: yesterday's partitions of every region, now closed (settlements included).",
    )
    def daily_settlements(context: ScheduleEvaluationContext, txmon: TxmonResource):
        day = (context.scheduled_execution_time - timedelta(days=1)).date()
        keys = [str(partition_key(day, region)) for region in txmon.settings().regions]
        return RunRequest(run_key=f"closed-{day}", run_config=run_config(keys), tags=PIPELINE_TAG)

    return daily_settlements
