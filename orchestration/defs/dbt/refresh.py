"""The live refresh: partitions that received data are rebuilt, checked and published by themselves,
the open day and closed days (late data) alike."""
# Every 5 s the `marts_refresh` sensor collects the region x day partitions that need a refresh: the staging slices that
# received rows (from staging.ingest_batches) and the slices a merge of the transactions' state changed
# (intermediate.changed_slices: a transaction moved to another day leaves its old slice marked too). When no refresh run
# is in flight it launches one run of `refresh_partitions` for all of them: the in-process executor, the code location
# and dbt's project loaded once. Each cycle of the run first advances the state of each database concerned (one merge
# over what landed), adds the slices that merge changed, then refreshes each partition through txmon.quality.refresh
# (rebuild from its watermark -> every check -> publication), two partitions side by side (their dbt commands in two
# dbt worker processes).
#
# That run then keeps following: in the same warm process (dbt parsed, Great Expectations loaded, connections to the
# databases known) it reads the batches landed after the ones it was launched for, and refreshes their partitions as
# they land, cycle after cycle, for up to TXMON_REFRESH_RUN_SECONDS; it ends sooner after IDLE_SECONDS with nothing to
# refresh, at its first failed partition, or once the sensor stops renewing its lease (sensor turned off, daemon
# stopped). Terminated (Terminate in the UI, a stop of the platform that its cycle outlasts), it begins no further
# partition, reports those begun once they end and ends CANCELED. Each cycle records how far it got (the run tag
# FOLLOWED_TAG); the sensor, which reads no batches while the run is in flight, resumes from there when the run
# succeeded and from the run's start when it failed or was canceled, so a partition is requested again whenever a
# refresh of it may not have happened. Partitions of a run that failed are requested again,
# at most MAX_ATTEMPTS times until new data lands for them.
#
# The same job refreshes yesterday's partitions after midnight (daily_settlements schedule, the settlements included now
# that the day has closed) and is what `txmon backfill` runs (one pass, no following).

import json
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
    SkipReason,
    in_process_executor,
    job,
    op,
    schedule,
    sensor,
)

from ingestion.batches import landed_since
from orchestration.defs.dbt.assets import DBT, refresh_in_run, refresh_records
from orchestration.partitions import parse_partition_key, partition_key
from orchestration.resources import TxmonResource, skip_while_unreachable
from txmon.core.db import connect
from txmon.core.leases import REFRESH, held, lease_file, renew
from txmon.core.settings import Role, Settings
from txmon.quality.refresh import ModelBuild, SliceRefresh, advance_state

JOB = "refresh_partitions"
PIPELINE_TAG = {"txmon/pipeline": "refresh"}
MAX_ATTEMPTS = 3
LAUNCH_TIMEOUT_SECONDS = 120  # a requested run not recorded by then is requested again
IDLE_SECONDS = 60  # a following run with nothing to refresh for this long ends (the sensor launches the next one)
POLL_SECONDS = 1.0
FOLLOWED_TAG = "txmon/followed_batches"  # the batch positions through which a following run has refreshed
STORAGE_POOL_RECYCLE = 3600  # seconds a pooled connection to Dagster's storage is kept
REFRESH_THREADS = DBT.processes  # partitions refreshed side by side in a run: one per dbt worker process
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


class RegionTurns:
    """The partitions of a refresh handed out to its threads: each region's days in order and one at a time (the days
    of one region share its indexes and its publication's roll-up), a free thread taking the next day of the region
    with the most days left that no other thread holds, so the threads stay busy to the end instead of one region's
    days running alone after the others'."""

    def __init__(self, keys: list[str]) -> None:
        self._left: dict[str, list[str]] = {}
        for key in sorted(keys):
            self._left.setdefault(parse_partition_key(key)[1], []).append(key)
        self._held: set[str] = set()
        self._lock = threading.Lock()

    @property
    def regions(self) -> int:
        return len(self._left)

    def close(self) -> None:
        """Hand out no more partitions (the ones taken are refreshed to their end)."""
        with self._lock:
            self._left.clear()

    def take(self, done: str | None = None) -> str | None:
        """The next partition for a thread that has just refreshed one of region ``done`` (released now), or None
        when every region with days left is held by another thread, or after ``close``."""
        with self._lock:
            self._held.discard(done or "")
            free = [region for region, keys in self._left.items() if keys and region not in self._held]
            if not free:
                return None
            region = max(free, key=lambda r: len(self._left[r]))
            self._held.add(region)
            return self._left[region].pop(0)


class RefreshConfig(Config):
    partitions: list[str]  # "2026-11-24|EU"
    full: bool = False  # rebuild each slice fully instead of from its watermark
    # Keep refreshing what lands after `batches` (staging.ingest_batches positions per database) for up to this long.
    follow_seconds: int = 0
    batches: dict[str, int] = {}


def refresh_job_def(manifest: dict, check_specs: list[AssetCheckSpec]):
    def refresh_all(context: OpExecutionContext, settings: Settings, keys: list[str], full: bool) -> list[str]:
        """Advance the state of each database the partitions live in, add the partitions its merge changed, then refresh
        them through txmon.quality.refresh, REFRESH_THREADS at a time in the order RegionTurns hands them out; each
        reported as Dagster events, in this thread, as it ends. What failed, if anything."""
        states: dict[str, ModelBuild] = {}  # region -> the merge of its database's state, one per database

        def advance(regions: set[str]) -> None:
            for region in sorted(regions - set(states)):
                dsn = settings.dsn_for_region(region)
                merged = next((m for r, m in states.items() if settings.dsn_for_region(r) == dsn), None)
                states[region] = merged or advance_state(settings, DBT, manifest, region)

        advance({parse_partition_key(k)[1] for k in keys})
        if keys:
            today = datetime.now(UTC).date()
            keys = sorted(set(keys) | {k for k in marked_slices(settings) if in_partitions(settings, k, today)})
        advance({parse_partition_key(k)[1] for k in keys})
        turns = RegionTurns(keys)
        ended: queue.Queue = queue.Queue()

        def refresh_in_turn() -> None:
            region = None
            while (key := turns.take(region)) is not None:
                region = parse_partition_key(key)[1]
                try:
                    outcome = refresh_in_run(context, settings, manifest, key, full=full, state=states[region])
                except BaseException as exc:  # reported below, never lost with its thread
                    ended.put((key, exc))
                    return
                ended.put((key, outcome))

        failed = []
        with ThreadPoolExecutor(max_workers=REFRESH_THREADS, thread_name_prefix="txmon-refresh") as pool:
            for _ in range(min(REFRESH_THREADS, turns.regions)):
                pool.submit(refresh_in_turn)
            try:
                for _ in keys:
                    key, outcome = ended.get()
                    if isinstance(outcome, BaseException):
                        raise outcome
                    report(context, key, outcome)
                    if not outcome.ok:
                        failed.append(f"{key}: {outcome.error or 'checks failed: ' + ', '.join(outcome.failed_checks)}")
            except BaseException:
                # A failure, or the run terminated (DagsterExecutionInterruptedError in this thread): no partition
                # begins; those begun end (leaving the pool waits for them), their publications reported.
                turns.close()
                pool.shutdown(wait=True)
                while not ended.empty():
                    key, outcome = ended.get()
                    if not isinstance(outcome, BaseException):
                        report(context, key, outcome)
                raise
        return failed

    def report(context: OpExecutionContext, key: str, outcome: SliceRefresh) -> None:
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

    @op(
        name="refresh",
        description="Rebuild -> checks -> publish, for each partition of the run's config; a live refresh run then "
        "keeps doing so for the partitions that receive data.",
    )
    def refresh_op(context: OpExecutionContext, config: RefreshConfig, txmon: TxmonResource) -> None:
        settings = txmon.settings()
        started = time.monotonic()
        # Dagster's PostgreSQL storage opens a connection for every event it writes (its default: no pool), and
        # a partition reports about twenty (checks, materializations): under load most of a report's time went to
        # those connections. This run holds pooled ones instead, as the webserver does.
        context.instance.optimize_for_webserver(statement_timeout=0, pool_recycle=STORAGE_POOL_RECYCLE, max_overflow=4)
        lease = lease_file(settings, REFRESH)
        todo, followed, idle_since, cycles = list(config.partitions), dict(config.batches), None, 0
        recorded = dict(followed)
        failed: list[str] = []
        while True:
            failed += refresh_all(context, settings, todo, config.full)
            if failed:
                break
            if followed != recorded:  # every batch through `followed` is refreshed
                context.instance.add_run_tags(context.run_id, {FOLLOWED_TAG: json.dumps(followed, sort_keys=True)})
                recorded = dict(followed)
            cycles += 1
            now = time.monotonic()
            if not config.follow_seconds or now - started >= config.follow_seconds or not held(lease):
                break
            if todo:
                idle_since = None
            elif now - (idle_since or now) >= IDLE_SECONDS:
                break
            else:
                idle_since = idle_since or now
                time.sleep(POLL_SECONDS)
            landed = landed_since(settings, followed)
            today = datetime.now(UTC).date()
            todo = sorted(k for k in set(landed.slices) | marked_slices(settings) if in_partitions(settings, k, today))
            followed = landed.cursor
        if failed:
            raise Failure(f"{len(failed)} partitions not published: {'; '.join(failed)}")
        if cycles > 1:
            context.log.info(f"followed new data for {time.monotonic() - started:.0f}s, {cycles} cycles")

    @job(
        name=JOB,
        executor_def=in_process_executor,
        tags=PIPELINE_TAG,
        description="Refreshes the region x day partitions of its config in one process: two partitions side by side, "
        "each region's days in turn; a live refresh run then follows what lands.",
    )
    def refresh_partitions():
        refresh_op()

    return refresh_partitions


def run_config(
    partitions: list[str], full: bool = False, follow_seconds: int = 0, batches: dict[str, int] | None = None
) -> dict:
    config = {"partitions": partitions, "full": full, "follow_seconds": follow_seconds, "batches": batches or {}}
    return {"ops": {"refresh": {"config": config}}}


def marked_slices(settings: Settings) -> set[str]:
    """Slices that a merge of the transactions' state changed, for their next refresh. A mark that can never be a
    partition (a day before the first partition, a region not configured) is dropped, not kept for ever."""
    marked = set()
    for dsn in settings.databases():
        with connect(settings.as_role(dsn, Role.TRANSFORM), autocommit=True, purpose="report") as conn:
            conn.execute(
                "DELETE FROM intermediate.changed_slices WHERE slice_date < %s OR region <> ALL(%s)",
                (settings.partitions_start_date, list(settings.regions)),
            )
            rows = conn.execute("SELECT slice_date, region FROM intermediate.changed_slices").fetchall()
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
        "(open day and late data alike) or that a merge of the state marked, when none is in flight; "
        "the run keeps refreshing what lands while the sensor ticks.",
    )
    @skip_while_unreachable
    def marts_refresh(context: SensorEvaluationContext, txmon: TxmonResource):
        settings = txmon.settings()
        renew(lease_file(settings, REFRESH))  # the run in flight keeps following while the sensor ticks
        cursor = _cursor(context.cursor)
        batches, attempts, last = cursor["batches"], cursor["attempts"], cursor["last"]
        pending = set(cursor["pending"])
        in_flight = context.instance.get_runs(RunsFilter(job_name=JOB, statuses=IN_FLIGHT), limit=1)
        if in_flight:  # it follows what lands (or, a backfill, holds the slices it refreshes): read after it
            return SkipReason(f"refresh run {in_flight[0].run_id} in flight")
        if last:
            runs = context.instance.get_runs(RunsFilter(tags={"dagster/run_key": last["run_key"]}), limit=1)
            if runs and runs[0].status == DagsterRunStatus.SUCCESS:
                attempts = {k: n for k, n in attempts.items() if k not in last["partitions"]}
                followed = json.loads(runs[0].tags.get(FOLLOWED_TAG, "{}"))
                batches = {db: max(batches.get(db, 0), followed.get(db, 0)) for db in {*batches, *followed}}
            elif runs or time.time() - last["at"] > LAUNCH_TIMEOUT_SECONDS:  # failed, canceled or never launched
                pending |= set(last["partitions"])
            else:
                return SkipReason("the last refresh run is not recorded yet")
            last = None
        today = datetime.now(UTC).date()
        landed = landed_since(settings, batches)
        fresh = {k for k in landed.slices if in_partitions(settings, k, today)}
        attempts = {k: n for k, n in attempts.items() if k not in fresh}  # new data: try again
        pending |= fresh | {k for k in marked_slices(settings) if in_partitions(settings, k, today)}
        todo = sorted(k for k in pending if attempts.get(k, 0) < MAX_ATTEMPTS)
        given_up = sorted(pending - set(todo))
        if given_up:
            context.log.warning(
                f"not requested again after {MAX_ATTEMPTS} failed runs (until new data lands): {', '.join(given_up)}"
            )
        state = {"batches": landed.cursor, "attempts": attempts, "pending": [], "last": None}
        if not todo:
            return SensorResult(skip_reason="no partition needs a refresh", cursor=json.dumps(state, sort_keys=True))
        run_key = f"refresh-{uuid.uuid4().hex[:12]}"
        for key in todo:
            attempts[key] = attempts.get(key, 0) + 1
        request = RunRequest(
            run_key=run_key,
            run_config=run_config(todo, follow_seconds=settings.refresh_run_seconds, batches=landed.cursor),
            tags={**PIPELINE_TAG, "txmon/partitions": ",".join(todo)[:4000]},
        )
        state.update(attempts=attempts, last={"run_key": run_key, "partitions": todo, "at": time.time()})
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
