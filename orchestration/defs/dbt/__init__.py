"""dbt models as Dagster assets, and the live refresh that keeps their partitions built, checked and
published: the marts_refresh sensor, the refresh_partitions job and the daily_settlements schedule."""

from dagster import AssetSelection, Definitions, define_asset_job

from orchestration.defs.dbt.assets import reference_assets, region_day_assets
from orchestration.defs.dbt.refresh import refresh_job_def, refresh_sensor_def, yesterday_schedule_def
from txmon.core.settings import Settings


def build(settings: Settings, manifest: dict) -> Definitions:
    reference = reference_assets(manifest)
    region_day = region_day_assets(settings, manifest)
    return Definitions(
        assets=[reference, region_day],
        jobs=[
            # One region x day partition, whole (what `txmon materialize` and a UI backfill run).
            define_asset_job(
                "region_day",
                selection=AssetSelection.assets(region_day) | AssetSelection.checks(*region_day.check_keys),
                description="Refreshes one region x day partition: rebuild -> every check -> publication.",
            ),
            # The unpartitioned dbt assets (FX seed, staging view): built once at set-up and when they change.
            define_asset_job(
                "reference",
                selection=AssetSelection.assets(reference),
                description="Builds the FX rates seed and the staging view, with their checks.",
            ),
            refresh_job_def(manifest, list(region_day.check_specs)),
        ],
        schedules=[yesterday_schedule_def()],
        sensors=[refresh_sensor_def()],
    )
