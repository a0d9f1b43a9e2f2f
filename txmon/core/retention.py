"""Retention: what txmon keeps only for a while is deleted once past its age, in one place."""
# - ``staging.raw_events`` (verbatim messages of events stored without some of their extra fields): after
#   TXMON_RAW_EVENT_RETENTION_DAYS (0: all of it; the landing then writes none).
# - ``staging.rejected_transactions`` (quarantine) and ``staging.duplicate_transactions``: after their days, and only
#   the offsets the offset audit (``kafka_offsets_accounted``) has verified. The audit counts each consumed offset in
#   these tables once, from where it stopped (``staging.offset_audit.verified_through``), so a row it has not counted
#   yet is kept until it has.
# - ``staging.ingest_batches`` (the batch log): after its days, and only batches whose offsets are all verified (the
#   audit starts a partition it never audited from the log's first offset).
# - Dagster's storage: asset check evaluations (their event log rows and the check execution records the UI reads) and
#   all but the latest sensor-reported materialization of each partition, after TXMON_DAGSTER_RETENTION_DAYS. Old runs
#   are deleted through Dagster's API by the daily job (orchestration/defs/maintenance), which calls ``prune`` too; so
#   does ``txmon prune``.
#
# Every delete takes at most ``BATCH_ROWS`` rows in its own short transaction, under lock and statement timeouts:
# pruning never holds a lock or a snapshot the landing would wait for. Every regional database is pruned
# (``settings.databases()``); the audit's positions come from the warehouse.
#
# The staging tables are pruned as ``txmon_retention`` (migration 0018), the one role that may delete from them: the
# ingest role, which parses untrusted input, can add audit evidence and never remove it.

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg

from txmon.core.db import connect
from txmon.core.settings import Role, Settings

BATCH_ROWS = 5000
SESSION = {"lock_timeout": "5s", "statement_timeout": "120s"}

# The audit's verified positions of the topic, as a relation: a(p, verified_through).
VERIFIED = "unnest(%(partitions)s::int[], %(verified)s::bigint[]) AS a(p, verified_through)"
# Per table: the key a DELETE matches, and at most %(n)s rows past their age that may go.
STAGING = {
    "staging.raw_events": (
        '(topic, "partition", "offset")',
        """SELECT topic, "partition", "offset" FROM staging.raw_events
           WHERE received_at < %(raw_events)s LIMIT %(n)s""",
    ),
    **{
        table: (
            '(topic, "partition", "offset")',
            f"""SELECT r.topic, r."partition", r."offset" FROM {table} AS r JOIN {VERIFIED} ON a.p = r."partition"
                WHERE r.topic = %(topic)s AND r.received_at < %({cutoff})s AND r."offset" <= a.verified_through
                LIMIT %(n)s""",  # noqa: S608 (constant table names)
        )
        for table, cutoff in (
            ("staging.rejected_transactions", "quarantine"),
            ("staging.duplicate_transactions", "duplicates"),
        )
    },
    "staging.ingest_batches": (
        "batch_id",
        f"""SELECT b.batch_id FROM staging.ingest_batches AS b
            WHERE b.committed_at < %(batch_log)s
              AND NOT EXISTS (SELECT FROM jsonb_each(b.offsets) AS o LEFT JOIN {VERIFIED} ON a.p = o.key::int
                              WHERE a.verified_through IS NULL OR (o.value->>1)::bigint > a.verified_through)
            LIMIT %(n)s""",  # noqa: S608 (constant SQL)
    ),
}
# Dagster's storage (its own schema; times are UTC without a zone).
CHECK_EVENT_TYPES = ["ASSET_CHECK_EVALUATION", "ASSET_CHECK_EVALUATION_PLANNED"]
DAGSTER = [
    (
        "dagster.asset_check_executions",
        """
        DELETE FROM asset_check_executions WHERE id IN (
            SELECT id FROM asset_check_executions
            WHERE coalesce(evaluation_event_timestamp, create_timestamp) < %(cutoff)s LIMIT %(n)s)""",
    ),
    (
        "dagster.event_logs",
        """
        DELETE FROM event_logs WHERE id IN (
            SELECT id FROM event_logs
            WHERE dagster_event_type = ANY(%(check_types)s) AND timestamp < %(cutoff)s LIMIT %(n)s)""",
    ),
    # Materializations the ingestion sensor reported belong to no run: all but the latest per partition.
    (
        "dagster.event_logs",
        """
        WITH stale AS MATERIALIZED (
            SELECT e.id FROM event_logs AS e
            WHERE e.run_id = '' AND e.dagster_event_type = 'ASSET_MATERIALIZATION' AND e.timestamp < %(cutoff)s
              AND e.id < (SELECT max(l.id) FROM event_logs AS l
                          WHERE l.asset_key = e.asset_key AND l.partition IS NOT DISTINCT FROM e.partition
                            AND l.dagster_event_type = 'ASSET_MATERIALIZATION')
            LIMIT %(n)s
        ), tags AS (
            DELETE FROM asset_event_tags WHERE event_id IN (SELECT id FROM stale)
        )
        DELETE FROM event_logs WHERE id IN (SELECT id FROM stale)""",
    ),
]


def cutoffs(settings: Settings, now: datetime) -> dict[str, datetime]:
    """What is older than these instants goes (by the name each statement uses)."""

    def before(days: int) -> datetime:
        return now - timedelta(days=days)

    return {
        "raw_events": before(settings.raw_event_retention_days),
        "quarantine": before(settings.quarantine_retention_days),
        "duplicates": before(settings.duplicate_retention_days),
        "batch_log": before(settings.batch_log_retention_days),
        "dagster": before(settings.dagster_retention_days),
    }


def _session(dsn: str) -> psycopg.Connection:
    conn = connect(dsn, autocommit=True, purpose="prune")
    for name, value in SESSION.items():
        conn.execute(f"SET {name} = '{value}'")
    return conn


def _in_batches(conn: psycopg.Connection, statement: str, params: dict) -> int:
    """Run a bounded DELETE until it deletes fewer rows than a batch; each run is its own transaction."""
    total = 0
    while True:
        deleted = conn.execute(statement, params).rowcount
        total += deleted
        if deleted < params["n"]:
            return total


def verified_offsets(settings: Settings) -> dict[int, int]:
    """partition -> the last offset of the topic the offset audit verified (in the warehouse)."""
    with connect(settings.home_dsn(Role.RETENTION), autocommit=True, purpose="prune") as conn:
        return dict(
            conn.execute(
                'SELECT "partition", verified_through FROM staging.offset_audit WHERE topic = %s', (settings.topic,)
            ).fetchall()
        )


def prune(settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Delete everything past its retention at ``now``; rows deleted per table (summed over databases)."""
    now = now or datetime.now(UTC)
    limits = cutoffs(settings, now)
    verified = verified_offsets(settings)
    params = {
        **limits,
        "n": BATCH_ROWS,
        "topic": settings.topic,
        "partitions": list(verified),
        "verified": list(verified.values()),
    }
    deleted: Counter = Counter()
    for dsn in settings.databases():
        with _session(settings.as_role(dsn, Role.RETENTION)) as conn:  # the one role that may delete there
            for table, (key, rows) in STAGING.items():
                deleted[table] += _in_batches(conn, f"DELETE FROM {table} WHERE {key} IN ({rows})", params)  # noqa: S608
    deleted.update(prune_dagster(settings, limits["dagster"]))
    return dict(deleted)


def prune_dagster(settings: Settings, cutoff: datetime) -> dict[str, int]:
    """Dagster's check evaluations and old sensor-reported materializations before ``cutoff``."""
    params = {"cutoff": cutoff.astimezone(UTC).replace(tzinfo=None), "n": BATCH_ROWS, "check_types": CHECK_EVENT_TYPES}
    with _session(settings.dagster_dsn) as conn:
        row = conn.execute("SELECT to_regclass('asset_check_executions') IS NULL").fetchone()
        assert row is not None  # a SELECT without FROM: always one row
        if row[0]:
            return {}  # no Dagster instance has used this database yet
        deleted: Counter = Counter()
        for table, statement in DAGSTER:
            deleted[table] += _in_batches(conn, statement, params)
        return dict(deleted)
