"""Write-audit-publish: a mart partition built in `marts` and checked is copied to `reporting`.

The copy replaces the partition in one transaction (delete + insert, serialised per partition
with an advisory lock): readers see the previous version or the new one, never a mix. A partition
whose blocking checks did not all pass is never published; `reporting` keeps the previous version.
Each publication is recorded in `reporting.published_partitions` (when, which run, which checks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

from psycopg import sql

from txmon.config import Settings
from txmon.db import connect
from txmon.dbt import Table
from txmon.quality import CheckOutcome


class NotPublished(RuntimeError):
    pass


@dataclass(frozen=True)
class Publication:
    table: str
    day: date
    region: str
    rows: int


def _ensure_table(conn, source: Table) -> list[str]:
    """reporting.<table> shaped like its mart (columns added when the mart gained some)."""
    table, date_column = source.name, source.date_column
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS reporting.{t} (LIKE {s}.{t})").format(
            t=sql.Identifier(table), s=sql.Identifier(source.schema)
        )
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON reporting.{t} ({d}, region)").format(
            i=sql.Identifier(f"{table}__{date_column}__region"), t=sql.Identifier(table), d=sql.Identifier(date_column)
        )
    )
    columns = {
        schema: [
            (name, kind)
            for name, kind in conn.execute(
                """SELECT column_name, format_type(atttypid, atttypmod)
                   FROM information_schema.columns c
                   JOIN pg_attribute a ON a.attrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass
                                      AND a.attname = c.column_name
                   WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position""",
                (schema, table),
            )
        ]
        for schema in (source.schema, "reporting")
    }
    present = {name for name, _ in columns["reporting"]}
    for name, kind in columns[source.schema]:
        if name not in present:
            conn.execute(
                sql.SQL("ALTER TABLE reporting.{t} ADD COLUMN {c} " + kind).format(
                    t=sql.Identifier(table), c=sql.Identifier(name)
                )
            )
    return [name for name, _ in columns[source.schema]]


def publish(
    settings: Settings, source: Table, day: date, region: str, run_id: str, checks: list[CheckOutcome],
    as_of: datetime | None = None,
) -> Publication:
    """Replace the (day, region) partition of reporting.<table> with the mart's, if every check passed."""
    if not source.published:
        raise ValueError(f"{source.relation} is not a published table (meta.txmon.published in its yml)")
    table = source.name
    if not checks:
        raise NotPublished(f"{table} {day}|{region}: no checks were run")
    failed = [c.name for c in checks if not c.passed]
    if failed:
        raise NotPublished(f"{table} {day}|{region}: checks failed: {', '.join(failed)}")
    date_column = sql.Identifier(source.date_column)
    with connect(settings.warehouse_dsn, purpose="publish") as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"reporting.{table}|{day}|{region}",))
        columns = sql.SQL(", ").join(map(sql.Identifier, _ensure_table(conn, source)))
        target = sql.SQL("reporting.{}").format(sql.Identifier(table))
        conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {d} = %s AND region = %s").format(t=target, d=date_column), (day, region)
        )
        rows = conn.execute(
            sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s}.{m} WHERE {d} = %s AND region = %s").format(
                t=target, c=columns, s=sql.Identifier(source.schema), m=sql.Identifier(table), d=date_column
            ),
            (day, region),
        ).rowcount
        conn.execute(
            """INSERT INTO reporting.published_partitions
                   (table_name, partition_date, region, run_id, row_count, checks, staging_as_of)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (table_name, partition_date, region) DO UPDATE SET
                   published_at = statement_timestamp(), run_id = excluded.run_id,
                   row_count = excluded.row_count, checks = excluded.checks,
                   staging_as_of = excluded.staging_as_of""",
            (
                table, day, region, run_id, rows,
                json.dumps({c.name: {"passed": c.passed, "summary": c.summary} for c in checks}, sort_keys=True),
                as_of,
            ),
        )
    return Publication(table, day, region, rows)
