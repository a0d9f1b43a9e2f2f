"""Keeps Dagster's own storage bounded: old runs and old sensor-reported events are pruned."""

from dagster import Definitions

from orchestration.defs.maintenance.prune import prune_dagster_history_job, prune_dagster_history_schedule


def build() -> Definitions:
    return Definitions(jobs=[prune_dagster_history_job], schedules=[prune_dagster_history_schedule])
