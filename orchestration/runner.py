"""Run region x day partitions through Dagster from the command line, recorded in the same
instance the UI shows (`txmon materialize`, `txmon backfill`), and the one-time set-up they need."""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from datetime import date, datetime

from dagster import AssetKey, DagsterEventType, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import GRPC_INFO_TAG  # where a run's code server is: a run it can terminate

from orchestration.definitions import build_definitions
from orchestration.defs.dbt.assets import DBT, FULL_SLICE_TAG, LAUNCHED_BY_TAG
from orchestration.defs.dbt.refresh import JOB, run_config
from orchestration.instance import OrchestrationError, open_instance, prepare
from orchestration.partitions import partition_key
from txmon.core.db import connect
from txmon.core.dbt import dbt_vars, manifest, partitioned_tables, targets, vars_arg
from txmon.core.settings import Settings

REFERENCE_RELATIONS = ("reference.fx_rates", "stg.stg_transactions")

# Runs started from the CLI log warnings and errors to the terminal; the UI has the full logs.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

CANCEL_SECONDS = 60.0  # how long a stop of the live platform waits for the runs it terminated to end


@dataclass
class PartitionOutcome:
    key: str
    success: bool
    run_id: str
    failed_checks: list[str]
    error: str | None = None

    def line(self) -> str:
        state = "ok" if self.success else "FAILED"
        detail = f" failed checks: {', '.join(self.failed_checks)}" if self.failed_checks else ""
        detail += f" ({self.error})" if self.error else ""
        return f"{self.key:<16} {state:<7} run {self.run_id}{detail}"


def _create_partitioned_tables(settings: Settings, target: str) -> None:
    """Create the partitioned models' tables, empty, once: parallel first runs would race to create them.
    In this process's dbt, whose parse the refresh that follows reuses."""
    empty_slice = dbt_vars(settings, date(1970, 1, 1), settings.regions[0])
    outcome = DBT.invoke(settings, ["run", "--select", "tag:partitioned", *vars_arg(empty_slice)], target=target)
    if not outcome.success:
        failed = [r.message for r in outcome.results or [] if r.status != "success"]
        reason = failed[0] if failed else outcome.error or "?"
        raise OrchestrationError(f"creating the mart tables failed: {reason[:500]}")


def _partitioned_relations() -> set[str]:
    return {t.relation for t in partitioned_tables(manifest())}


def _missing(settings: Settings) -> dict[str, set[str]]:
    """Per dbt target (database), the reference and partitioned relations not created yet."""
    missing = {}
    for target, dsn in targets(settings).items():
        with connect(dsn, autocommit=True, purpose="setup") as conn:
            missing[target] = {
                name
                for name in (*REFERENCE_RELATIONS, *_partitioned_relations())
                if conn.execute("SELECT to_regclass(%s) IS NULL", (name,)).fetchone()[0]
            }
    return missing


def setup(settings: Settings):
    """Dagster home, dbt manifest, the reference assets (FX seed, staging view) and the mart tables."""

    instance = open_instance(settings)
    prepare(settings)
    defs = build_definitions(settings)
    reference = [AssetKey(["reference", "fx_rates"]), AssetKey(["stg", "stg_transactions"])]
    missing = _missing(settings)
    if any(names & set(REFERENCE_RELATIONS) for names in missing.values()) or any(
        instance.get_latest_materialization_event(key) is None for key in reference
    ):
        result = defs.resolve_job_def("reference").execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET
        )
        if not result.success:
            raise OrchestrationError(f"building the reference models failed (run {result.run_id})")
    for target, names in missing.items():
        if names & _partitioned_relations():
            _create_partitioned_tables(settings, target)
    return defs, instance


def _outcomes(result, keys: list[str]) -> list[PartitionOutcome]:
    """Per partition: the failed check evaluations and step failures of one run."""

    evaluations = result.get_asset_check_evaluations()
    if not evaluations:  # events logged by an op (refresh_partitions) rather than yielded by an asset
        evaluations = [
            e.event_specific_data for e in result.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        ]
    error = None
    if not result.success:
        failures = [ev.message for ev in result.all_events if ev.is_step_failure]
        error = failures[0].splitlines()[0][:300] if failures else "run failed"
    outcomes = []
    for key in keys:
        failed = sorted(
            f"{e.asset_key.to_user_string()}:{e.check_name}"
            for e in evaluations
            if not e.passed and (e.partition is None or str(e.partition) == key)
        )
        outcomes.append(
            PartitionOutcome(
                key,
                result.success and not failed,
                result.run_id,
                failed,
                error if not result.success and (failed or len(keys) == 1) else None,
            )
        )
    if not result.success and all(o.success for o in outcomes):  # an error that named no partition
        outcomes = [PartitionOutcome(o.key, False, o.run_id, [], error) for o in outcomes]
    return outcomes


def materialize(settings: Settings, partitions: list[tuple[date, str]], *, full: bool = True) -> list[PartitionOutcome]:
    """Refresh region x day partitions (rebuild -> checks -> publish) through Dagster, recorded in the
    instance the UI shows: one partition is a run of the region_day asset job; several are one run
    of the refresh_partitions job, one after another in one process."""

    defs, instance = setup(settings)
    keys = [str(partition_key(day, region)) for day, region in partitions]
    who = {LAUNCHED_BY_TAG: f"txmon CLI ({getpass.getuser()})"}
    try:
        if len(keys) == 1:
            result = defs.resolve_job_def("region_day").execute_in_process(
                partition_key=keys[0],
                instance=instance,
                raise_on_error=False,
                run_config=QUIET,
                tags={FULL_SLICE_TAG: str(full).lower(), **who},
            )
        else:
            result = defs.resolve_job_def(JOB).execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_config={**QUIET, **run_config(keys, full)},
                tags=who,
            )
        return _outcomes(result, keys)
    finally:
        instance.dispose()


def end_runs(settings: Settings, since: datetime, timeout: float = CANCEL_SECONDS) -> list[str]:
    """Once the daemon has stopped and the leases ended: the runs the daemon launched since ``since`` that are still
    in flight end by themselves within settings.stop_grace_seconds (a live refresh run ends its cycle), else they
    are terminated through the run launcher (their op is interrupted and the run ends CANCELED); the ids of those
    not ended ``timeout`` seconds later (the daemon's run monitoring marks them canceled at its next start)."""
    instance = open_instance(settings)
    try:

        def in_flight() -> list[DagsterRun]:
            runs = instance.get_runs(
                RunsFilter(
                    statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING],
                    created_after=since,
                )
            )
            # Runs of a code server, not those a `txmon materialize` or `backfill` executes in its own process.
            return [r for r in runs if GRPC_INFO_TAG in r.tags]

        def wait(seconds: float) -> list[DagsterRun]:
            deadline = time.monotonic() + seconds
            while (runs := in_flight()) and time.monotonic() < deadline:
                time.sleep(1)
            return runs

        for run in wait(settings.stop_grace_seconds):
            if run.status != DagsterRunStatus.CANCELING:
                try:
                    instance.run_launcher.terminate(run.run_id)  # CANCELING first, then its code server is asked
                except Exception:  # its code server is gone: nothing runs it any more; reported below
                    pass
        return [r.run_id for r in wait(timeout)]
    finally:
        instance.dispose()
