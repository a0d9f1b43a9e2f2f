"""Two sets of dbt assets, split by partitioning (as dbt and Dagster both advise):

- reference: the FX seed and the staging view, unpartitioned, built once at set-up;
- partitioned: the intermediate and mart models, rebuilt one region x day slice per run with the
  slice passed as --vars (one run per partition; no single-run backfills, see README).
"""


from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetSelection, AutomationCondition
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from orchestration.defs.ingestion.assets import STAGING_TRANSACTIONS
from orchestration.partitions import parse_partition_key, region_day_partitions
from orchestration.resources import TxmonResource
from txmon.config import Settings
from txmon.dbt import DBT_PROJECT_DIR, dbt_vars, slice_processed_before, vars_arg

PARTITIONED = "tag:partitioned"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


FULL_SLICE_TAG = "txmon/full_slice"


def slice_mode(day: date | None, today: date, tags: Mapping[str, str], processed_before: bool) -> str:
    """The day still open refreshes only what landed since the last run, once it has been built;
    any other day (and any run tagged txmon/full_slice, as `txmon materialize` and `txmon backfill`
    are) rebuilds its whole slice."""
    return "new_data" if day == today and processed_before and tags.get(FULL_SLICE_TAG) != "true" else "full"


def dbt_build_args(settings: Settings, partition: str | None, mode: str = "full") -> list[str]:
    """The dbt command of one run: build (models + data tests), the slice and settings as --vars."""
    day, region = parse_partition_key(partition) if partition else (None, None)
    return [
        "build", "--exclude-resource-type", "unit_test", "--indirect-selection", "cautious",
        *vars_arg(dbt_vars(settings, day, region, mode)),
    ]


def on_new_data(upstream: AssetKey) -> AutomationCondition:
    """Run a partition when its upstream partition changed, on any day (late data included)."""
    return (
        AutomationCondition.any_deps_updated().allow(AssetSelection.assets(upstream)).since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label(f"new data in {upstream.to_user_string()}")


INT_LATEST = AssetKey(["intermediate", "int_transactions_latest"])
CLOSED_DAYS = ~AutomationCondition.in_latest_time_window()
AUTOMATION = {
    # Closed days only: the day still open is refreshed in-process by the open_day_marts sensor
    # (open_day.py) within seconds; a run per refresh would cost tens of seconds of start-up.
    # Late events re-materialize the older partitions they touch.
    "int_transactions_latest": on_new_data(STAGING_TRANSACTIONS) & CLOSED_DAYS,
    "fct_suspicious_activity": on_new_data(INT_LATEST) & CLOSED_DAYS,
    # Settlements: on a schedule once the UTC day closes (daily_settlements_schedule), and for
    # older days when late data changes them.
    "fct_daily_settlements": on_new_data(INT_LATEST) & CLOSED_DAYS,
}


class TxmonDbtTranslator(DagsterDbtTranslator):
    """Asset keys are the warehouse relations: schema / table (marts/suspicious_activity)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        relation = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        return AssetKey([dbt_resource_props["schema"], relation])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return dbt_resource_props["fqn"][1] if len(dbt_resource_props["fqn"]) > 2 else "reference"

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> AutomationCondition | None:
        return AUTOMATION.get(dbt_resource_props["name"])


TRANSLATOR = TxmonDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(
    manifest=dbt_project.manifest_path,
    exclude=PARTITIONED,
    dagster_dbt_translator=TRANSLATOR,
    name="reference_dbt_models",
)
def reference_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, txmon: TxmonResource):
    yield from dbt.cli(dbt_build_args(txmon.settings(), None), context=context).stream()


@dbt_assets(
    manifest=dbt_project.manifest_path,
    select=PARTITIONED,
    partitions_def=region_day_partitions(Settings.from_env()),
    dagster_dbt_translator=TRANSLATOR,
    name="partitioned_dbt_models",
)
def partitioned_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, txmon: TxmonResource):
    settings = txmon.settings()
    day, region = parse_partition_key(context.partition_key)
    today = datetime.now(UTC).date()
    mode = slice_mode(day, today, context.run.tags, day == today and slice_processed_before(settings, day, region))
    context.log.info(f"slice mode: {mode}")
    yield from dbt.cli(dbt_build_args(settings, context.partition_key, mode), context=context).stream()
