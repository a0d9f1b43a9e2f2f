"""Validate one suite against one region x day batch, through the file context kept in `gx/`."""

from __future__ import annotations

import threading
from datetime import date, datetime
from pathlib import Path

import great_expectations as gx
import sqlalchemy as sa
from great_expectations.datasource.fluent.sql_datasource import QueryAsset
from great_expectations.expectations.metrics import util as gx_metric_util

from expectations import daily_settlements, staging_transactions, suspicious_activity
from txmon.core.checks import CheckOutcome, sampled
from txmon.core.settings import Role, Settings

GX_ROOT = Path(__file__).parent
SUITES = {
    "staging_transactions": staging_transactions,
    "suspicious_activity": suspicious_activity,
    "daily_settlements": daily_settlements,
}
# great_expectations.yml reads the connection from this variable; set per validation (the staging
# suite reads the region's own database, the mart suites the warehouse).
URL_VARIABLE = "TXMON_GX_URL"
_lock = threading.Lock()

# GX (1.24) learns the columns of a query asset by running the query and fetching every row it returns
# (great_expectations.expectations.metrics.util.column_reflection_fallback): for a day of 10 million events that
# fetch was most of the staging suite's time, and the open day's checks paid it at every refresh. Asking for no
# row gives GX the same column names; every other query of the validation is unchanged.
_reflect_columns = gx_metric_util.column_reflection_fallback


def _reflect_columns_without_rows(selectable, dialect, sqlalchemy_engine, schema_name=None):
    if isinstance(selectable, sa.TextClause):
        selectable = sa.text(f"SELECT * FROM ({selectable.text}) AS batch LIMIT 0")  # noqa: S608 (txmon's own query)
    return _reflect_columns(selectable, dialect, sqlalchemy_engine, schema_name)


gx_metric_util.column_reflection_fallback = _reflect_columns_without_rows


def _sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg2://", 1)


def validate(
    settings: Settings, suite: str, day: date, region: str, relation: str | None = None, since: datetime | None = None
) -> CheckOutcome:
    """Run `suite` on the (day, region) batch of its table (or of `relation`, a table of the same shape),
    narrowed to the rows landed or rebuilt since `since` when given."""
    if suite not in SUITES:
        raise ValueError(f"no suite {suite!r}; suites: {', '.join(SUITES)}")
    if region not in settings.regions:
        raise ValueError(f"region {region!r} is not one of {list(settings.regions)}")
    module = SUITES[suite]
    dsn = settings.dsn_for_region(region, Role.TRANSFORM)  # the region's staging and models live there
    with _lock:
        # The datasource's connection string is a config variable, given for this context only.
        context = gx.get_context(
            mode="file", project_root_dir=GX_ROOT, runtime_environment={URL_VARIABLE: _sqlalchemy_url(dsn)}
        )
        datasource = context.data_sources.get("txmon")
        # A query asset held in memory for this batch only: the file context keeps no per-partition assets.
        query = module.batch_query(relation or module.RELATION, day, region, since)
        asset = QueryAsset(name=f"{suite}_batch", query=query)
        asset._datasource = datasource
        datasource.assets.append(asset)  # in memory: the batch looks its asset up by name
        batch = asset.get_batch(asset.build_batch_request())
        # Counts of unexpected values; the values themselves (identifiers among them) only as the
        # sample the deployment allows (TXMON_METADATA_SAMPLE_SIZE, none by default).
        result_format = {"result_format": "SUMMARY", "partial_unexpected_count": settings.metadata_sample_size}
        result = batch.validate(
            gx.ExpectationSuite(name=suite, expectations=module.expectations(settings)), result_format=result_format
        )
        datasource.get_execution_engine().engine.dispose()
    failed = []
    for r in result.results:
        if r.success:
            continue
        config = r.expectation_config
        detail = r.result or {}
        failed.append(
            {
                "expectation": config.type,
                "kwargs": {k: str(v) for k, v in config.kwargs.items() if k != "batch_id"},
                "unexpected_count": detail.get("unexpected_count"),
                "element_count": detail.get("element_count"),
                **sampled(settings, "sample_failing_values", detail.get("partial_unexpected_list") or []),
            }
        )
    stats = result.statistics
    return CheckOutcome(
        name=f"gx_{suite}",
        passed=bool(result.success),
        summary=(
            f"{stats['successful_expectations']}/{stats['evaluated_expectations']} expectations met"
            + (f"; failed: {', '.join(f['expectation'] for f in failed)}" if failed else "")
        ),
        metadata={
            "evaluated_expectations": stats["evaluated_expectations"],
            "successful_expectations": stats["successful_expectations"],
            "unsuccessful_expectations": stats["unsuccessful_expectations"],
            "success_percent": stats["success_percent"],
            "failed_expectations": failed,
        },
    )
