"""Run region x day partitions through Dagster from the command line, recorded in the same
instance the UI shows (`txmon materialize`, `txmon backfill`), and the one-time set-up they need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from orchestration.instance import OrchestrationError, dagster_home, prepare
from txmon.config import Settings
from txmon.db import connect
from txmon.dbt import dbt_vars, run_dbt, vars_arg

REFERENCE_RELATIONS = ("reference.fx_rates", "staging.stg_transactions")
PARTITIONED_RELATIONS = ("intermediate.int_transactions_latest", "marts.suspicious_activity", "marts.daily_settlements")

# Runs started from the CLI log warnings and errors to the terminal; the UI has the full logs.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


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


def check_partition(settings: Settings, day: date, region: str) -> None:
    """Raise ValueError with a one-line reason when (day, region) is not a partition."""
    today = datetime.now(UTC).date()
    if region not in settings.regions:
        raise ValueError(f"region {region!r} is not one of {', '.join(settings.regions)}")
    if not settings.partitions_start_date <= day <= today:
        raise ValueError(f"{day} is outside the partitions ({settings.partitions_start_date} to {today})")


def days(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _create_partitioned_tables(settings: Settings) -> None:
    """Create the partitioned models' tables, empty, once: parallel first runs would race to create them."""
    empty_slice = dbt_vars(settings, date(1970, 1, 1), settings.regions[0])
    proc = run_dbt(settings, ["run", "--quiet", "--select", "tag:partitioned", *vars_arg(empty_slice)], capture=True)
    if proc.returncode != 0:
        raise OrchestrationError(f"creating the mart tables failed: {(proc.stdout + proc.stderr).strip()[-500:]}")


def setup(settings: Settings):
    """Dagster home, dbt manifest, the reference assets (FX seed, staging view) and the mart tables."""
    from dagster import AssetKey, DagsterInstance

    dagster_home(settings)
    prepare(settings)
    from orchestration.definitions import defs

    instance = DagsterInstance.get()
    reference = [AssetKey(["reference", "fx_rates"]), AssetKey(["staging", "stg_transactions"])]
    with connect(settings.warehouse_dsn, autocommit=True, purpose="setup") as conn:
        missing = {
            name
            for name in (*REFERENCE_RELATIONS, *PARTITIONED_RELATIONS)
            if conn.execute("SELECT to_regclass(%s) IS NULL", (name,)).fetchone()[0]
        }
    if missing & set(REFERENCE_RELATIONS) or any(
        instance.get_latest_materialization_event(key) is None for key in reference
    ):
        result = defs.resolve_job_def("reference").execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET
        )
        if not result.success:
            raise OrchestrationError(f"building the reference models failed (run {result.run_id})")
    if missing & set(PARTITIONED_RELATIONS):
        _create_partitioned_tables(settings)
    return defs, instance


def materialize(
    settings: Settings, partitions: list[tuple[date, str]], job_name: str = "region_day"
) -> list[PartitionOutcome]:
    """One run of `job_name` per partition, in order, each recorded in the Dagster instance
    (region_day: rebuild, check, publish; audit_publish: check and publish the marts as built)."""
    from orchestration.defs.dbt.assets import FULL_SLICE_TAG
    from orchestration.partitions import partition_key

    defs, instance = setup(settings)
    job = defs.resolve_job_def(job_name)
    outcomes = []
    for day, region in partitions:
        key = partition_key(day, region)
        result = job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET, tags={FULL_SLICE_TAG: "true"}
        )
        failed = sorted(
            f"{e.asset_key.to_user_string()}:{e.check_name}"
            for e in result.get_asset_check_evaluations()
            if not e.passed
        )
        error = None
        if not result.success:
            failures = [ev.message for ev in result.all_events if ev.is_step_failure]
            error = failures[0].splitlines()[0][:300] if failures else "run failed"
        outcomes.append(PartitionOutcome(str(key), result.success and not failed, result.run_id, failed, error))
    instance.dispose()
    return outcomes
