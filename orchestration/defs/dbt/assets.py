"""The dbt models as Dagster assets, in two sets split by partitioning (as dbt and Dagster advise): reference, the
unpartitioned models built once at set-up, and region_day, one multi-asset per region x day partition."""
# The two sets:
# - reference: the FX seed and the staging view, unpartitioned, built once at set-up (dbt CLI);
# - region_day: one region x day partition of the partitioned models, their published copies in `reporting` and every
#   check of the partition, as one multi-asset that is never split (can_subset=False). Whatever materializes it (the
#   live refresh, the schedule, `txmon materialize`, a backfill from the UI) refreshes the partition through
#   txmon.quality.refresh: rebuild -> checks -> publish, in one step of one run. No run can check a partition it did not
#   just build.
#
# What each table needs of orchestration (published or not, its checks, its open-day refresh) is in its dbt yml's
# `meta.txmon`, read here and by txmon.quality.refresh; nothing is listed per table in Python.

import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    multi_asset,
)
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.asset_utils import build_dbt_specs

from orchestration.partitions import parse_partition_key, region_day_partitions
from orchestration.resources import TxmonResource
from txmon.core.dbt import (
    HOME_TARGET,
    PARTITIONED,
    DbtWorkers,
    Table,
    dbt_vars,
    partitioned_tables,
    source_checks,
    targets,
    vars_arg,
)
from txmon.core.errors import first_line
from txmon.core.settings import Settings
from txmon.quality.publication import GLOBAL_CHECK, GLOBAL_CHECK_DESCRIPTION, GLOBAL_SETTLEMENTS, ROLLED_UP
from txmon.quality.reconciliations import DESCRIPTIONS
from txmon.quality.refresh import SliceRefresh, refresh_slice
from txmon.reports.package import PackageError
from txmon.reports.package import build as build_package
from txmon.reports.package import build_global as build_global_package

PACKAGE_ASSET = AssetKey(["reports", "report_package"])

# A run tagged with it rebuilds its slices fully instead of from their watermarks.
FULL_SLICE_TAG = "txmon/full_slice"
# Who launched a run that publishes (the CLI sets it; Dagster tags sensors', schedules' and backfills' runs).
LAUNCHED_BY_TAG = "txmon/launched_by"


def launched_by(tags: dict[str, str]) -> str:
    """What started a run, for the publication log: a sensor, a schedule, a backfill, the CLI or the UI."""
    if tags.get(LAUNCHED_BY_TAG):
        return tags[LAUNCHED_BY_TAG]
    for tag, what in (
        ("dagster/sensor_name", "sensor"),
        ("dagster/schedule_name", "schedule"),
        ("dagster/backfill", "backfill"),
    ):
        if tags.get(tag):
            return f"{what} {tags[tag]}"
    return "Dagster UI or API"


DBT_UNIQUE_ID = "dagster_dbt/unique_id"


def dbt_build_args(settings: Settings) -> list[str]:
    """The dbt command of the reference models: build (models + data tests) with the settings as --vars."""
    return [
        "build",
        "--exclude-resource-type",
        "unit_test",
        "--indirect-selection",
        "cautious",
        *vars_arg(dbt_vars(settings)),
    ]


class TxmonDbtTranslator(DagsterDbtTranslator):
    """Asset keys are the warehouse relations: schema / table (marts/suspicious_activity)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        relation = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        return AssetKey([dbt_resource_props["schema"], relation])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return dbt_resource_props["fqn"][1] if len(dbt_resource_props["fqn"]) > 2 else "reference"


TRANSLATOR = TxmonDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def readable_check(spec: AssetCheckSpec, manifest: dict, partitions_def) -> AssetCheckSpec:
    """A dbt test as a check with a name a person reads (not_null__amount_usd) and a description."""
    test = manifest["nodes"][spec.metadata[DBT_UNIQUE_ID]]
    kind = (test.get("test_metadata") or {}).get("name") or test["name"]
    column = test.get("column_name")
    name = f"{kind}__{column}" if column else kind
    kwargs = {
        k: v
        for k, v in ((test.get("test_metadata") or {}).get("kwargs") or {}).items()
        if k not in ("model", "column_name")
    }
    detail = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    description = (
        test.get("description")
        or f"dbt test {kind}"
        + (f" on {column}" if column else "")
        + (f" ({detail})" if detail else "")
        + ", on the partition's slice."
    )
    return AssetCheckSpec(
        name=name,
        asset=spec.asset_key,
        description=description,
        additional_deps=spec.additional_deps,
        metadata=spec.metadata,
        blocking=True,
        partitions_def=partitions_def,
    )


def freshness(settings: Settings, table: Table) -> FreshnessPolicy:
    """Open-day tables are refreshed within seconds of landing; the others once the day has closed."""
    if table.open_day:
        return FreshnessPolicy.time_window(fail_window=timedelta(minutes=settings.marts_freshness_minutes))
    return FreshnessPolicy.cron(deadline_cron="0 1 * * *", lower_bound_delta=timedelta(hours=24))


def reference_assets(manifest: dict) -> AssetsDefinition:
    @dbt_assets(manifest=manifest, exclude=PARTITIONED, dagster_dbt_translator=TRANSLATOR, name="reference_dbt_models")
    def reference_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, txmon: TxmonResource):
        settings = txmon.settings()
        # Every database that holds a region's models gets the FX seed and the staging view too; the
        # home database's build is the one reported.
        for target in targets(settings):
            if target != HOME_TARGET:
                dbt.cli([*dbt_build_args(settings), "--target", target], context=context).wait()
        yield from dbt.cli(dbt_build_args(settings), context=context).stream()

    return reference_dbt_models


# One per process: dbt in two worker processes (two cores), each parsing the project once; a refresh run refreshes as
# many slices side by side (orchestration.defs.dbt.refresh), their dbt commands at the same time instead of in turn.
DBT = DbtWorkers(processes=2)


def region_day_assets(settings: Settings, manifest: dict) -> AssetsDefinition:
    with warnings.catch_warnings():  # partitioned check specs are a Dagster preview feature: said once, here
        warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
        return _region_day_assets(settings, manifest)


def _region_day_assets(settings: Settings, manifest: dict) -> AssetsDefinition:
    partitions_def = region_day_partitions(settings)
    tables = partitioned_tables(manifest)
    model_specs, test_specs = build_dbt_specs(
        translator=TRANSLATOR,
        manifest=manifest,
        select=PARTITIONED,
        exclude="",
        selector="",
        io_manager_key=None,
        project=None,
    )
    by_key = {AssetKey([t.schema, t.name]): t for t in tables}
    model_specs = [
        spec.replace_attributes(freshness_policy=freshness(settings, by_key[spec.key])).merge_attributes(
            metadata={"txmon/published": by_key[spec.key].published, "txmon/open_day": by_key[spec.key].open_day}
        )
        for spec in model_specs
    ]
    reporting_specs = [
        AssetSpec(
            key=AssetKey(["reporting", t.name]),
            deps=[AssetKey([t.schema, t.name])],
            group_name="reporting",
            kinds={"postgres"},
            skippable=True,  # not published when a check fails
            description=(
                f"reporting.{t.name}: the partitions of {t.relation} that passed every check of their refresh "
                "(dbt tests, GX suites, reconciliations), replaced atomically; what regulators and BI tools read."
            ),
        )
        for t in tables
        if t.published
    ]
    reporting_specs += [
        AssetSpec(
            key=AssetKey(["reporting", GLOBAL_SETTLEMENTS]),
            deps=[AssetKey(["reporting", ROLLED_UP])],
            group_name="reporting",
            kinds={"postgres"},
            skippable=True,
            description="reporting.global_daily_settlements, in the home database: every region's published daily "
            "settlements, aggregates only (what crosses regions), replaced per region-day at each publication.",
        )
    ]
    reporting_specs.append(
        AssetSpec(
            key=PACKAGE_ASSET,
            deps=[AssetKey(["reporting", t.name]) for t in tables if t.published],
            group_name="reports",
            kinds={"parquet", "csv", "xlsx"},
            skippable=True,  # built once the day's settlements are published (the day has closed)
            description="The region-day's report package for regulators, built from reporting whenever its "
            "settlements are (re)published: CSV, Parquet and XLSX, a manifest with the publication, its checks and "
            "control totals, signed (Ed25519); a republication is a new version (txmon report verify checks one).",
        )
    )
    check_specs = [readable_check(spec, manifest, partitions_def) for spec in test_specs]
    check_specs += [
        AssetCheckSpec(
            name,
            asset=AssetKey([t.schema, t.name]),
            description=DESCRIPTIONS[name],
            blocking=True,
            partitions_def=partitions_def,
        )
        for t in tables
        for name in t.checks
    ]
    check_specs += [
        # Not blocking in Dagster's sense (the reference staging view downstream of staging would then
        # wait for this step): txmon.quality.refresh still publishes nothing when one of them fails.
        AssetCheckSpec(
            name,
            asset=AssetKey(list(source)),
            description=DESCRIPTIONS[name],
            blocking=False,
            partitions_def=partitions_def,
        )
        for source, names in sorted(source_checks(manifest).items())
        for name in names
    ]
    check_specs.append(
        AssetCheckSpec(
            GLOBAL_CHECK,
            asset=AssetKey(["reporting", GLOBAL_SETTLEMENTS]),
            description=GLOBAL_CHECK_DESCRIPTION,
            blocking=False,
            partitions_def=partitions_def,
        )
    )

    @multi_asset(
        name="refresh_region_day",
        specs=[*model_specs, *reporting_specs],
        check_specs=check_specs,
        partitions_def=partitions_def,
        can_subset=False,
        allow_arbitrary_check_specs=True,  # staging's checks run with the partition they gate
        description="Refreshes one region x day partition: rebuild (from the slice's watermark, or fully "
        f"with the run tag {FULL_SLICE_TAG}=true) -> every check -> publication to reporting if all passed.",
    )
    def region_day(context: AssetExecutionContext, txmon: TxmonResource):
        full = context.run.tags.get(FULL_SLICE_TAG) == "true"
        outcome = refresh_in_run(context, txmon.settings(), manifest, context.partition_key, full=full, whole=True)
        context.log.info(outcome.line())
        if outcome.error:
            raise Failure(f"{outcome.key}: {outcome.error}")
        yield from step_results(outcome, check_specs)
        if outcome.failed_checks:
            raise Failure(f"{outcome.key} not published: checks failed: {', '.join(outcome.failed_checks)}")

    return region_day


def refresh_in_run(
    context, settings: Settings, manifest: dict, key: str, *, full: bool, whole: bool = False, state=None
):
    """One partition refreshed by a Dagster run (the op's or the asset's context): recorded with the run's id
    and what launched it; ``state``: the merge of the partition's state made for it, if the run made one."""
    day, region = parse_partition_key(key)
    outcome = refresh_slice(
        settings,
        DBT,
        manifest,
        day,
        region,
        run_id=context.run_id,
        full=full,
        whole=whole,
        launched_by=launched_by(context.run.tags),
        state=state,
    )
    if outcome.ok and any(p.table == ROLLED_UP for p in outcome.published):
        # The day's settlements were (re)published: the region-day's package, a new version if it changed.
        # So is the roll-up's package of the day, which the region's settlements are now part of.
        try:
            built, rolled_up = build_package(settings, day, region), build_global_package(settings, day)
        except (PackageError, OSError) as exc:
            outcome.error = f"published, but its report package failed: {first_line(exc)}"
        else:
            outcome.package = {
                "version": built.version,
                "path": str(built.path),
                "new_version": built.created,
                "files": len(built.manifest["files"]),
                "global_version": rolled_up.version,
                "global_path": str(rolled_up.path),
            }
    return outcome


def check_key_by_test(check_specs: list[AssetCheckSpec]) -> dict[str, AssetCheckSpec]:
    return {s.metadata[DBT_UNIQUE_ID]: s for s in check_specs if DBT_UNIQUE_ID in (s.metadata or {})}


def refresh_records(outcome: SliceRefresh, check_specs: list[AssetCheckSpec]):
    """What one refresh reports: (asset key, metadata) per built or published table, and
    (asset key, check name, passed, description, metadata) per check."""
    by_test = check_key_by_test(check_specs)
    materialized = [
        (
            AssetKey([m.table.schema, m.table.name]),
            {"rows_affected": m.rows, "execution_seconds": m.seconds, "slice_mode": outcome.mode},
        )
        for m in outcome.models
    ]
    materialized += [
        (AssetKey(["reporting", p.table]), {"rows": p.rows, "checks_passed": len(outcome.checks)})
        for p in outcome.published
    ]
    if outcome.package:
        materialized.append((PACKAGE_ASSET, outcome.package))
    checks = []
    for run in outcome.checks:
        spec = by_test.get(run.dbt_test) if run.dbt_test else None
        key, name = (spec.asset_key, spec.name) if spec else (AssetKey([run.schema, run.table]), run.outcome.name)
        checks.append(
            (
                key,
                name,
                run.outcome.passed,
                run.outcome.summary,
                {
                    "summary": run.outcome.summary,
                    "slice_mode": outcome.mode,
                    "seconds": run.seconds,
                    "staging_as_of": outcome.as_of.isoformat() if outcome.as_of else None,
                    "checked_since": outcome.checked_since.isoformat() if outcome.checked_since else "whole slice",
                    **run.outcome.metadata,
                },
            )
        )
    return materialized, checks


def step_results(outcome: SliceRefresh, check_specs: list[AssetCheckSpec]):
    materialized, checks = refresh_records(outcome, check_specs)
    for key, metadata in materialized:
        yield MaterializeResult(asset_key=key, metadata=metadata)
    for key, name, passed, description, metadata in checks:
        yield AssetCheckResult(
            asset_key=key,
            check_name=name,
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            description=description,
            metadata=metadata,
        )
