"""dbt models as Dagster assets, their automation and the settlements schedule."""

from dagster import Definitions

from orchestration.defs.dbt.assets import partitioned_dbt_models, reference_dbt_models
from orchestration.defs.dbt.open_day import open_day_marts_sensor
from orchestration.defs.dbt.schedules import daily_settlements_schedule, marts_automation, reference_job, region_day_job

defs = Definitions(
    assets=[reference_dbt_models, partitioned_dbt_models],
    jobs=[region_day_job, reference_job],
    schedules=[daily_settlements_schedule],
    sensors=[marts_automation, open_day_marts_sensor],
)
