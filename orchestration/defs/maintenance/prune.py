"""The daily retention job and its schedule (00:40 UTC): Dagster's old runs deleted through its API, then what
txmon.core.retention prunes (check evaluations, raw events, quarantine, duplicates, batch log)."""

from datetime import UTC, datetime, timedelta

from dagster import DagsterInstance, DefaultScheduleStatus, OpExecutionContext, RunsFilter, ScheduleDefinition, job, op

from orchestration.resources import TxmonResource
from txmon.core import retention
from txmon.core.settings import Settings

RUN_BATCH = 500


def delete_old_runs(instance: DagsterInstance, cutoff: datetime, keep: str | None = None) -> int:
    """Delete the runs created before ``cutoff`` (with their events) through Dagster's API, all but ``keep``."""
    deleted = 0
    while True:
        records = instance.get_run_records(RunsFilter(created_before=cutoff), limit=RUN_BATCH)
        records = [r for r in records if r.dagster_run.run_id != keep]
        if not records:
            return deleted
        for record in records:
            instance.delete_run(record.dagster_run.run_id)
            deleted += 1


def prune_all(settings: Settings, instance: DagsterInstance, now: datetime, keep: str | None = None) -> dict[str, int]:
    """Everything past its retention: Dagster's old runs, then what txmon.core.retention prunes; rows per table."""
    runs = delete_old_runs(instance, now - timedelta(days=settings.dagster_retention_days), keep)
    return {"dagster.runs": runs, **retention.prune(settings, now)}


@op
def prune_dagster_history(context: OpExecutionContext, txmon: TxmonResource) -> None:
    """Delete what is past its retention (txmon/core/retention.py): Dagster's runs, check evaluations and
    sensor-reported events; the raw events, quarantine, duplicates and batch log of every database.

    Ticks are pruned by Dagster itself (`retention` in dagster.yaml).
    """
    deleted = prune_all(txmon.settings(), context.instance, datetime.now(UTC), keep=context.run_id)
    context.log.info("deleted " + ", ".join(f"{table} {rows}" for table, rows in deleted.items()))


@job(
    description="Deletes what is past its retention: Dagster's runs and check evaluations, the raw events, "
    "quarantine, duplicates and batch log (TXMON_*_RETENTION_DAYS)."
)
def prune_dagster_history_job():
    prune_dagster_history()


prune_dagster_history_schedule = ScheduleDefinition(
    name="prune_dagster_history",
    job=prune_dagster_history_job,
    cron_schedule="40 0 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
