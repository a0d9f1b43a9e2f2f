"""When the marts refresh without anyone clicking.

- Declarative automation (the `marts_automation` sensor, on by default) evaluates each dbt asset's
  condition (see assets.py): new data in a region x day partition of staging re-materializes the
  latest-state and suspicious-activity partitions of that day, late days included.
- `daily_settlements_schedule` materializes yesterday's settlements for every region once the UTC
  day has closed.
"""


from datetime import timedelta

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from orchestration.defs.dbt.assets import PARTITIONED, partitioned_dbt_models, reference_dbt_models
from orchestration.defs.quality.checks import CHECK_SELECTION, freshness_checks
from orchestration.defs.quality.reporting import reporting_assets
from orchestration.partitions import partition_key, region_day_partitions
from orchestration.resources import TxmonResource
from txmon.config import Settings

# Every asset downstream of staging for one region x day: what `txmon materialize` and
# `txmon backfill` run, one run per partition.
region_day_job = define_asset_job(
    "region_day",
    # The dbt models with their tests, the GX suites and reconciliations, then the publication to
    # reporting (write-audit-publish); staging's own partition checks run in the same run.
    selection=(AssetSelection.assets(partitioned_dbt_models, *reporting_assets) | CHECK_SELECTION)
    - AssetSelection.checks(*freshness_checks),
    partitions_def=region_day_partitions(Settings.from_env()),
    description=f"Rebuilds one region x day slice of every dbt model tagged {PARTITIONED}, with its checks.",
    tags={"txmon/pipeline": "region_day"},
)

# The unpartitioned dbt assets (FX seed, staging view): built once at set-up and when they change.
reference_job = define_asset_job(
    "reference",
    selection=AssetSelection.assets(reference_dbt_models),
    description="Builds the FX rates seed and the staging view, with their checks.",
)

marts_automation = AutomationConditionSensorDefinition(
    "marts_automation",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Evaluates the automation conditions of the dbt assets (see orchestration/defs/dbt).",
)


@schedule(
    name="daily_settlements",
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    job=region_day_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="At 00:15 UTC: yesterday's region x day partitions, settlements included, for every region.",
)
def daily_settlements_schedule(context: ScheduleEvaluationContext, txmon: TxmonResource):
    day = (context.scheduled_execution_time - timedelta(days=1)).date()
    for region in txmon.settings().regions:
        key = partition_key(day, region)
        yield RunRequest(run_key=f"{key}", partition_key=key)
