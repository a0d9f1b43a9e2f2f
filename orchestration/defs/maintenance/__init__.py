"""Retention, daily: Dagster's old runs, check evaluations and sensor-reported events, and the
warehouse's raw events, quarantine, duplicates and batch log past their days (txmon/core/retention.py)."""

from dagster import Definitions

from orchestration.defs.maintenance.prune import prune_dagster_history_job, prune_dagster_history_schedule


def build() -> Definitions:
    return Definitions(jobs=[prune_dagster_history_job], schedules=[prune_dagster_history_schedule])
