"""Write-audit-publish: a mart partition built in `marts` and checked is copied to `reporting`."""
# Exactly what was checked is published: a refresh holds the slice's lock (``slice_lock``) from its build to its
# publication, and the copy verifies, in the snapshot it copies from, that the slice's build is still the one its checks
# saw. The copy replaces the partition in one transaction (delete + insert): readers see the previous version or the new
# one, never a mix. A partition whose checks did not all pass is never published; `reporting` keeps the previous
# version. Each publication is appended to `reporting.publication_log` (when, which run, which checks, which role,
# launched by what); `reporting.published_partitions` is its latest entry per partition.
#
# Connects as the publication role: it reads the marts and the slice watermarks, writes `reporting`.

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg import sql

from txmon.core.checks import CheckOutcome
from txmon.core.db import connect
from txmon.core.dbt import Table
from txmon.core.settings import Role, Settings


class NotPublished(RuntimeError):
    pass


@dataclass(frozen=True)
class Publication:
    table: str
    day: date
    region: str
    rows: int


def _columns(conn, source: Table) -> list[str]:
    """The mart's columns, each of which reporting.<table> (declared by the migrations) must have."""
    found = {
        schema: [
            name
            for (name,) in conn.execute(
                """SELECT column_name FROM information_schema.columns
                   WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position""",
                (schema, source.name),
            )
        ]
        for schema in (source.schema, "reporting")
    }
    if not found["reporting"]:
        raise NotPublished(f"reporting.{source.name} does not exist: its migration declares it (`txmon migrate`)")
    missing = [name for name in found[source.schema] if name not in found["reporting"]]
    if missing:
        raise NotPublished(
            f"reporting.{source.name} lacks the mart's column(s) {', '.join(missing)}: add them in a migration"
        )
    return found[source.schema]


# model -> (processed_until, built_at): what the slice's last build of the model processed, and when
# that build was made (which identifies it).
Watermarks = dict[str, tuple[datetime, datetime]]


def slice_watermarks(conn, day: date, region: str) -> Watermarks:
    """Each partitioned model's watermark for the slice."""
    return {
        model: (processed_until, built_at)
        for model, processed_until, built_at in conn.execute(
            """SELECT model, processed_until, built_at FROM intermediate.slice_watermarks
               WHERE slice_date = %s AND region = %s""",
            (day, region),
        )
    }


# A refresh waits this long for another refresh of its slice (or for the state's lock), then fails (and is retried)
# instead of queueing behind one that hung.
SLICE_LOCK_TIMEOUT = "15min"


@contextmanager
def _advisory_lock(settings: Settings, region: str, key: str, purpose: str, *, shared: bool = False) -> Iterator[None]:
    """A session-level advisory lock on its own connection to the region's database, held for the block. Only the
    transformation role may take advisory locks."""
    mode = "_shared" if shared else ""
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose=purpose) as conn:
        conn.execute(f"SET lock_timeout = '{SLICE_LOCK_TIMEOUT}'")
        conn.execute(f"SELECT pg_advisory_lock{mode}(hashtext(%s))", (key,))
        try:
            yield
        finally:
            conn.execute(f"SELECT pg_advisory_unlock{mode}(hashtext(%s))", (key,))


def slice_lock(settings: Settings, day: date, region: str):
    """Hold the slice's refresh lock: no other refresh rebuilds, checks or publishes it meanwhile (the sensor,
    `txmon materialize` and the schedule may meet on one slice; the second waits)."""
    return _advisory_lock(settings, region, f"txmon slice|{day}|{region}", "slice-lock")


def state_lock(settings: Settings, region: str):
    """The transactions' state of the region's database, held shared by a slice's build, checks and publication: a
    merge takes it exclusively for its transaction (dbt_project/macros/state.sql), so the state they read does not
    change under them."""
    return _advisory_lock(settings, region, "txmon state", "state-lock", shared=True)


def publish(
    settings: Settings,
    sources: list[Table],
    day: date,
    region: str,
    run_id: str,
    checks: list[CheckOutcome],
    *,
    checked: Watermarks,
    as_of: datetime | None = None,
    launched_by: str = "unknown",
) -> list[Publication]:
    """Replace the (day, region) partition of each reporting table with its mart's, if every check
    passed on exactly the build being copied; all of the slice's tables, or none.

    ``checked`` is the slice's watermarks when its checks ran. The copy runs in one repeatable-read
    transaction that first reads them again: if any model of the slice was rebuilt since (by anything
    that did not hold the slice lock, e.g. dbt run by hand), nothing is published.
    """
    for source in sources:
        if not source.published:
            raise ValueError(f"{source.relation} is not a published table (meta.txmon.published in its yml)")
    where = f"{', '.join(s.name for s in sources)} {day}|{region}"
    if not checks:
        raise NotPublished(f"{where}: no checks were run")
    failed = [c.name for c in checks if not c.passed]
    if failed:
        raise NotPublished(f"{where}: checks failed: {', '.join(failed)}")
    summary = json.dumps({c.name: {"passed": c.passed, "summary": c.summary} for c in checks}, sort_keys=True)
    published = []
    with connect(settings.dsn_for_region(region, Role.PUBLISH), purpose="publish") as conn:
        # One snapshot for the verification and every copy. Two publications of one partition never
        # meet (each holds the slice lock); if they did, the second would fail to serialise, not mix.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        if slice_watermarks(conn, day, region) != checked:
            raise NotPublished(
                f"{where}: the slice was rebuilt after its checks ran; its next refresh checks and publishes it"
            )
        for source in sources:
            rows = _copy(conn, source, day, region)
            conn.execute(
                """INSERT INTO reporting.publication_log (table_name, partition_date, region, run_id, row_count,
                       checks, staging_as_of, built_as_of, launched_by)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    source.name,
                    day,
                    region,
                    run_id,
                    rows,
                    summary,
                    as_of,
                    checked.get(source.name, (None,))[0],
                    launched_by,
                ),
            )
            published.append(Publication(source.name, day, region, rows))
    return published


def _copy(conn, source: Table, day: date, region: str) -> int:
    """Replace the slice of reporting.<table> with the mart's; the number of rows copied."""
    date_column = sql.Identifier(source.date_column)
    columns = sql.SQL(", ").join(map(sql.Identifier, _columns(conn, source)))
    target = sql.SQL("reporting.{}").format(sql.Identifier(source.name))
    conn.execute(
        sql.SQL("DELETE FROM {t} WHERE {d} = %s AND region = %s").format(t=target, d=date_column), (day, region)
    )
    return conn.execute(
        sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s}.{m} WHERE {d} = %s AND region = %s").format(
            t=target, c=columns, s=sql.Identifier(source.schema), m=sql.Identifier(source.name), d=date_column
        ),
        (day, region),
    ).rowcount


# What crosses regions: each region's published daily settlements (aggregates, no identifiers), rolled
# up into the home database's reporting.global_daily_settlements whenever the region publishes them.
ROLLED_UP = "daily_settlements"
GLOBAL_SETTLEMENTS = "global_daily_settlements"
GLOBAL_CHECK = "global_settlements_match"
GLOBAL_CHECK_DESCRIPTION = (
    "After publication: the home database's roll-up of the region-day equals the region's published daily "
    "settlements (aggregates only cross regions)."
)
SETTLEMENT_COLUMNS = ("settlement_date", "region", "currency", "transaction_count", "settled_count", "settled_volume")


def published_settlements(settings: Settings, day: date, region: str) -> list[tuple]:
    """The region's published daily settlements of the day, from its own database."""
    columns = sql.SQL(", ").join(map(sql.Identifier, SETTLEMENT_COLUMNS))
    with connect(settings.dsn_for_region(region, Role.PUBLISH), autocommit=True, purpose="roll-up") as conn:
        return conn.execute(
            sql.SQL(
                "SELECT {c} FROM reporting.daily_settlements WHERE settlement_date = %s AND region = %s"
                " ORDER BY currency"
            ).format(c=columns),
            (day, region),
        ).fetchall()


def roll_up(settings: Settings, day: date, region: str) -> Publication:
    """Replace the region-day's rows of the home database's global roll-up with the region's published
    daily settlements (one transaction in the home database, after the region's own publication)."""
    rows = published_settlements(settings, day, region)
    columns = sql.SQL(", ").join(map(sql.Identifier, SETTLEMENT_COLUMNS))
    with connect(settings.home_dsn(Role.PUBLISH), purpose="roll-up") as conn:
        conn.execute(
            "DELETE FROM reporting.global_daily_settlements WHERE settlement_date = %s AND region = %s", (day, region)
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO reporting.global_daily_settlements ({c}) VALUES (%s, %s, %s, %s, %s, %s)").format(
                    c=columns
                ),
                rows,
            )
    return Publication(GLOBAL_SETTLEMENTS, day, region, len(rows))


def global_settlements_match(settings: Settings, day: date, region: str) -> CheckOutcome:
    """The home database's roll-up of the region-day equals the region's published daily settlements."""
    expected = published_settlements(settings, day, region)
    columns = sql.SQL(", ").join(map(sql.Identifier, SETTLEMENT_COLUMNS))
    with connect(settings.home_dsn(Role.PUBLISH), autocommit=True, purpose="check") as conn:
        actual = conn.execute(
            sql.SQL(
                "SELECT {c} FROM reporting.global_daily_settlements WHERE settlement_date = %s AND region = %s"
                " ORDER BY currency"
            ).format(c=columns),
            (day, region),
        ).fetchall()
    passed = actual == expected
    summary = (
        f"{len(actual)} currencies, equal to {region}'s published daily settlements"
        if passed
        else f"{len(actual)} rows in the roll-up, {len(expected)} published in {region}: they differ"
    )
    return CheckOutcome(GLOBAL_CHECK, passed, summary, {"rows": len(actual)})
