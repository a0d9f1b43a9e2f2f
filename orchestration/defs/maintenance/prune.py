
from datetime import UTC, datetime, timedelta

from dagster import DefaultScheduleStatus, OpExecutionContext, RunsFilter, ScheduleDefinition, job, op

from orchestration.resources import TxmonResource
from txmon.db import connect

RUN_BATCH = 500


@op
def prune_dagster_history(context: OpExecutionContext, txmon: TxmonResource) -> None:
    """Delete runs (with their events) older than the retention, and old sensor-reported events.

    Ticks are pruned by Dagster itself (`retention` in dagster.yaml). Materializations reported by
    the ingestion sensor belong to no run; all but the latest per partition are deleted here.
    """
    settings = txmon.settings()
    cutoff = datetime.now(UTC) - timedelta(days=settings.dagster_retention_days)
    deleted = 0
    while True:
        records = context.instance.get_run_records(RunsFilter(created_before=cutoff), limit=RUN_BATCH)
        records = [r for r in records if r.dagster_run.run_id != context.run_id]
        if not records:
            break
        for record in records:
            context.instance.delete_run(record.dagster_run.run_id)
            deleted += 1
    with connect(settings.dagster_dsn, purpose="prune") as conn:
        stale = """SELECT id FROM event_logs e
                   WHERE e.run_id = '' AND e.dagster_event_type = 'ASSET_MATERIALIZATION' AND e.timestamp < %s
                     AND e.id < (SELECT max(l.id) FROM event_logs l
                                 WHERE l.asset_key = e.asset_key AND l.partition IS NOT DISTINCT FROM e.partition
                                   AND l.dagster_event_type = 'ASSET_MATERIALIZATION')"""
        conn.execute(f"DELETE FROM asset_event_tags WHERE event_id IN ({stale})", (cutoff.replace(tzinfo=None),))  # noqa: S608
        events = conn.execute(f"DELETE FROM event_logs WHERE id IN ({stale})", (cutoff.replace(tzinfo=None),)).rowcount  # noqa: S608
    context.log.info(f"deleted {deleted} runs and {events} sensor-reported events older than {cutoff:%Y-%m-%d}")


@job(description="Keeps Dagster's storage bounded (runs and sensor-reported events past the retention).")
def prune_dagster_history_job():
    prune_dagster_history()


prune_dagster_history_schedule = ScheduleDefinition(
    name="prune_dagster_history",
    job=prune_dagster_history_job,
    cron_schedule="40 0 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
