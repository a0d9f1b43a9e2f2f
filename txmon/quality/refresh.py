"""Refreshing a region x day partition, the one way every path does it (the live refresh runs, the
schedule, `txmon materialize`, `txmon backfill`, a backfill from the UI): rebuild -> every check of
the partition -> publish if all of them passed, in one unit of work."""
# - State: the transactions' state of the slice's database (int_transaction_state, one row per transaction) is advanced
#   by one merge over what landed since the last one, holding the state's lock exclusively (a refresh run advances it
#   once per cycle for all the slices it refreshes). The merge notes the slices it changed (changed_slices).
# - Rebuild: dbt in a warm process (the project parsed once), the slice's marts from the state, holding the state's lock
#   shared until the publication, so the state the build, the checks and the copy read does not change. Incrementally
#   (only the transactions whose state changed since the slice's watermark) once the slice has been built, fully when
#   asked or the first time. While its day is open a slice rebuilds only the models whose yml says `open_day: true`
#   (the settlements wait for the day to close).
# - Checks: the models' dbt tests (the state against staging, the marts against the state) and, side by side with
#   them, the checks each table's yml lists (GX suites) and staging's own. After a publication an incremental refresh
#   checks what landed or changed since that publication's staging clock (everything before passed every check then);
#   the settlements, an aggregate, and every full refresh are checked whole.
# - Publish: every published table of the slice is copied to `reporting` (txmon/quality/publication.py) only when every
#   check of the unit passed.
#
# No Dagster here: orchestration turns a SliceRefresh into Dagster events.

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from txmon.core.checks import CheckOutcome
from txmon.core.db import connect
from txmon.core.dbt import (
    Dbt,
    NodeResult,
    Table,
    dbt_vars,
    partitioned_tables,
    slice_processed_before,
    source_checks,
    target_for,
    vars_arg,
)
from txmon.core.errors import first_line
from txmon.core.settings import Role, Settings
from txmon.quality.publication import (
    GLOBAL_SETTLEMENTS,
    ROLLED_UP,
    NotPublished,
    Publication,
    Watermarks,
    global_settlements_match,
    publish,
    roll_up,
    slice_lock,
    slice_watermarks,
    state_lock,
)
from txmon.quality.reconciliations import run_check

# The checks beside the dbt tests run in this many threads (the GX suites take turns: Great Expectations' context is
# not shared between threads).
CHECK_THREADS = 3


@dataclass(frozen=True)
class ModelBuild:
    table: Table
    status: str
    rows: int | None
    seconds: float


@dataclass(frozen=True)
class CheckRun:
    """One check evaluated on the slice: on which relation, and the dbt test it came from (if one)."""

    schema: str
    table: str
    outcome: CheckOutcome
    dbt_test: str | None = None
    seconds: float = 0.0


@dataclass
class SliceRefresh:
    day: date
    region: str
    mode: str
    models: list[ModelBuild] = field(default_factory=list)
    checks: list[CheckRun] = field(default_factory=list)
    published: list[Publication] = field(default_factory=list)
    error: str | None = None
    not_published: str | None = None
    as_of: datetime | None = None  # the state's watermark: every staging row landed before it is in the build
    watermarks: Watermarks = field(default_factory=dict)  # the slice's build the checks saw (publish verifies)
    checked_since: datetime | None = None  # checks narrowed to what landed or was rebuilt since then
    seconds: float = 0.0
    package: dict | None = None  # the report package of the published region-day (txmon.reports), once built

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}|{self.region}"

    @property
    def failed_checks(self) -> list[str]:
        return [f"{c.schema}.{c.table}:{c.outcome.name}" for c in self.checks if not c.outcome.passed]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed_checks

    def line(self) -> str:
        if self.error:
            return f"{self.key} {self.mode}: error: {self.error}"
        built = ", ".join(
            f"{m.table.name} {m.rows if m.rows is not None else '?'} rows {m.seconds:.1f}s" for m in self.models
        )
        own = sorted((c for c in self.checks if c.dbt_test is None), key=lambda c: -c.seconds)
        tests = sum(c.seconds for c in self.checks if c.dbt_test)
        slowest = ", ".join(f"{c.outcome.name} {c.seconds:.1f}s" for c in own[:3])
        state = f"published {', '.join(p.table for p in self.published)}" if self.published else self.not_published
        if self.package:
            state += f"; report package v{self.package['version']}"
        scope = f"since {self.checked_since:%H:%M:%S}" if self.checked_since else "whole slice"
        return (
            f"{self.key} {self.mode} in {self.seconds:.1f}s: {built}; {len(self.checks)} checks {scope} "
            f"(dbt tests {tests:.1f}s; {slowest}); {state}"
        )


def tables_to_build(manifest: dict, day: date, *, today: date | None = None, whole: bool = False) -> list[Table]:
    """Every partitioned model once the day has closed (or when asked for the whole partition);
    while it is open only those refreshed on the open day."""
    today = today or datetime.now(UTC).date()
    tables = partitioned_tables(manifest)
    return tables if whole or day < today else [t for t in tables if t.open_day]


def advance_state(
    settings: Settings, dbt: Dbt, manifest: dict, region: str, *, restate: date | None = None
) -> ModelBuild:
    """One merge of the transactions' state of the region's database over what landed since the last one (the merge
    takes the state's lock exclusively for its transaction); with ``restate``, that day's slice of the region is also
    derived again from staging. Its build, or RuntimeError when dbt did not make it."""
    table = next(t for t in partitioned_tables(manifest) if t.whole_database)
    variables = dbt_vars(settings, restate, region) if restate else dbt_vars(settings)
    args = ["run", "--select", table.model, *vars_arg(variables)]
    outcome = dbt.invoke(settings, args, target=target_for(settings, region))
    node = next((n for n in outcome.results or () if n.unique_id == f"model.txmon.{table.model}"), None)
    if node is None or node.status != "success":
        raise RuntimeError(f"dbt did not advance {table.model}: {(node and node.message) or outcome.error or '?'}")
    return ModelBuild(table, node.status, node.rows_affected, node.seconds)


def refresh_slice(
    settings: Settings,
    dbt: Dbt,
    manifest: dict,
    day: date,
    region: str,
    *,
    run_id: str,
    full: bool = False,
    whole: bool = False,
    launched_by: str = "unknown",
    state: ModelBuild | None = None,
) -> SliceRefresh:
    """Rebuild, check and (if every check passed) publish one region x day partition, holding its lock. The state is
    advanced first unless the caller did (``state``: that merge's build, reported with the slice); a full refresh that
    advances it also restates the slice from staging."""
    started = time.monotonic()
    tables = tables_to_build(manifest, day, whole=whole)
    result = SliceRefresh(day, region, "full")
    try:
        state = state or advance_state(settings, dbt, manifest, region, restate=day if full else None)
        result.models.append(state)
        with slice_lock(settings, day, region), state_lock(settings, region):
            if not full and slice_processed_before(settings, day, region):
                result.mode = "new_data"
                result.checked_since = checked_through(settings, day, region, tables)
            else:
                analyze_stale_staging(settings, day, region)
            _build(settings, dbt, manifest, [t for t in tables if not t.whole_database], result)
            if result.error is None:
                _check(settings, dbt, manifest, tables, result)
            if result.error is None:
                _publish(settings, tables, result, run_id, launched_by)
            if result.ok and not result.not_published:
                take_mark(settings, day, region)  # no merge can have marked it again meanwhile: the lock is shared
    except Exception as exc:
        result.error = first_line(exc)
    result.seconds = time.monotonic() - started
    return result


def take_mark(settings: Settings, day: date, region: str) -> None:
    """The slice was refreshed, checked and published: a merge's mark of it is taken. A refresh that failed leaves
    it, so the sensor requests the slice again."""
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="dbt") as conn:
        conn.execute("DELETE FROM intermediate.changed_slices WHERE slice_date = %s AND region = %s", (day, region))


def analyze_stale_staging(settings: Settings, day: date, region: str) -> int:
    """Before a whole-slice build: fresh statistics for the slice's staging day if it landed rows since it was last
    analysed (txmon.analyze_stale_staging, migration 0016), in its own transaction: the checks read that day. How many
    days were analysed."""
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="dbt") as conn:
        row = conn.execute("SELECT txmon.analyze_stale_staging(%s, %s)", (day, day)).fetchone()
    return row[0] if row else 0


def _dbt(
    settings: Settings, dbt: Dbt, command: list[str], tables: list[Table], result: SliceRefresh
) -> list[NodeResult] | None:
    """One dbt command on the slice's models; its node results, or None (and result.error) when dbt failed."""
    variables = dbt_vars(settings, result.day, result.region, result.mode, result.checked_since)
    args = [*command, "--select", *(t.model for t in tables), *vars_arg(variables)]
    outcome = dbt.invoke(settings, args, target=target_for(settings, result.region))
    if outcome.results is None:
        result.error = f"dbt {command[0]} failed: {outcome.error or '?'}"
    return outcome.results


def _build(settings: Settings, dbt: Dbt, manifest: dict, tables: list[Table], result: SliceRefresh) -> None:
    # `run` then `test` (in _check), not `build`: a failed test must not leave the models after it unbuilt
    # (and unchecked); every model is rebuilt, every data test evaluated, and nothing published if one failed.
    node_results = _dbt(settings, dbt, ["run"], tables, result)
    if node_results is None:
        return
    by_model = {t.model: t for t in tables}
    nodes = manifest["nodes"]
    for node_result in node_results:
        props = nodes.get(node_result.unique_id)
        if props is None or props["resource_type"] != "model" or props["name"] not in by_model:
            continue  # hooks
        model = ModelBuild(by_model[props["name"]], node_result.status, node_result.rows_affected, node_result.seconds)
        result.models.append(model)
    errors = [m.table.model for m in result.models if m.status != "success"]
    missing = set(by_model) - {m.table.model for m in result.models}
    if errors or missing:
        result.error = f"dbt did not build {', '.join(sorted(set(errors) | missing))}"


def _dbt_tests(
    settings: Settings, dbt: Dbt, manifest: dict, tables: list[Table], result: SliceRefresh
) -> list[CheckRun]:
    """The models' data tests on the slice (the dbt unit tests check the models' SQL, not a slice's
    data: they run with the test suite, not here)."""
    # buildable: with a test whose other parents are upstream of the slice's models (the state is held to the staging
    # view); the reference models' own tests it also selects are theirs, not the slice's.
    command = ["test", "--indirect-selection", "buildable", "--exclude-resource-type", "unit_test"]
    node_results = _dbt(settings, dbt, command, tables, result) or []
    nodes = manifest["nodes"]
    models = {t.model for t in tables}
    runs = []
    for node_result in node_results:
        unique_id = node_result.unique_id
        props = nodes.get(unique_id)
        attached = nodes.get((props or {}).get("attached_node") or "", {})
        if props is None or props["resource_type"] != "test" or attached.get("name") not in models:
            continue
        status = node_result.status
        name = attached.get("alias") or attached.get("name", "?")
        message = f"dbt test {props['name']}: {status}"
        if node_result.failures:
            message += f" ({node_result.failures} failing rows)"
        runs.append(
            CheckRun(
                attached.get("schema", "?"),
                name,
                CheckOutcome(props["name"], status == "pass", message, {"failures": node_result.failures or 0}),
                dbt_test=unique_id,
                seconds=node_result.seconds,
            )
        )
    return runs


def state_as_of(settings: Settings, region: str) -> datetime | None:
    """The state's watermark: every staging row landed before it is in the state (and so in the slice's build)."""
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
        row = conn.execute("SELECT max(processed_until) FROM intermediate.state_watermark").fetchone()
    return row[0] if row else None


def checked_through(settings: Settings, day: date, region: str, tables: list[Table]) -> datetime | None:
    """How far staging was checked by the partition's last publication of every published table
    being refreshed (None: one of them was never published, or not since staging_as_of existed)."""
    published = [t.name for t in tables if t.published]
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
        count, since = conn.execute(
            """SELECT count(staging_as_of), min(staging_as_of) FROM reporting.published_partitions
               WHERE partition_date = %s AND region = %s AND table_name = ANY(%s)""",
            (day, region, published),
        ).fetchone()
    return since if published and count == len(published) else None


def _check(settings: Settings, dbt: Dbt, manifest: dict, tables: list[Table], result: SliceRefresh) -> None:
    """Every check of the slice on the build just made: the dbt tests in this thread while the others
    (GX suites, reconciliations, staging's checks: read-only queries, each on its own connections) run
    side by side in CHECK_THREADS threads."""
    day, region = result.day, result.region
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
        result.watermarks = slice_watermarks(conn, day, region)
    result.as_of = state_as_of(settings, region)
    targets = [(t.schema, t.name, name) for t in tables for name in t.checks]
    targets += [
        (schema, name, check) for (schema, name), checks in sorted(source_checks(manifest).items()) for check in checks
    ]

    def timed(check: str) -> tuple[CheckOutcome, float]:
        started = time.monotonic()
        outcome = run_check(settings, check, day, region, result.checked_since)
        return outcome, round(time.monotonic() - started, 3)

    with ThreadPoolExecutor(max_workers=CHECK_THREADS, thread_name_prefix="txmon-check") as pool:
        pending = [(schema, name, pool.submit(timed, check)) for schema, name, check in targets]
        result.checks += _dbt_tests(settings, dbt, manifest, tables, result)
        for schema, name, future in pending:
            outcome, seconds = future.result()
            result.checks.append(CheckRun(schema, name, outcome, seconds=seconds))


def _publish(settings: Settings, tables: list[Table], result: SliceRefresh, run_id: str, launched_by: str) -> None:
    published = [t for t in tables if t.published]
    if not published:
        return
    try:
        result.published = publish(
            settings,
            published,
            result.day,
            result.region,
            run_id,
            [c.outcome for c in result.checks],
            checked=result.watermarks,
            as_of=result.as_of,
            launched_by=launched_by,
        )
    except NotPublished as exc:
        result.not_published = f"not published: {exc}"
        return
    if any(p.table == ROLLED_UP for p in result.published):
        result.published.append(roll_up(settings, result.day, result.region))
        started = time.monotonic()
        outcome = global_settlements_match(settings, result.day, result.region)
        result.checks.append(
            CheckRun("reporting", GLOBAL_SETTLEMENTS, outcome, seconds=round(time.monotonic() - started, 3))
        )
