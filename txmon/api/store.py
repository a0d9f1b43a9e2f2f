"""The API's reads: a connection pool per database and role, every query parameterised and scoped
to regions, each region read in the database it lives in (TXMON_REGION_DSNS)."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ingestion.lag import positions
from txmon.core.db import pool
from txmon.core.settings import Role, Settings

log = logging.getLogger("txmon.api")

# How long a request waits for a connection (a database that is down answers 503, not a hung request);
# health checks and scrapes wait less.
POOL_TIMEOUT = 5.0
HEALTH_TIMEOUT = 2.0
# An account's events of one day are returned whole up to this many (the response says when cut).
MAX_ACCOUNT_EVENTS = 5000

SUSPICIOUS = """
SELECT transaction_id, account_id, counterparty_id, region, amount, currency, amount_usd, threshold_usd,
       status, event_time, event_date, reasons, evidence, refreshed_at
FROM reporting.suspicious_activity
WHERE event_date = %(day)s AND region = %(region)s AND transaction_id > %(after)s
  AND (%(reason)s::text IS NULL OR %(reason)s::text = ANY (reasons))
ORDER BY transaction_id
LIMIT %(n)s
"""
SETTLEMENTS = """
SELECT settlement_date, region, currency, transaction_count, settled_count, settled_volume
FROM reporting.daily_settlements
WHERE settlement_date = %(day)s AND region = %(region)s
ORDER BY currency
"""
BY_TRANSACTION = """
SELECT transaction_id, status, event_time, account_id, counterparty_id, amount, currency, region,
       fraud_flag, ingested_at, topic, "partition", "offset"
FROM staging.transactions
WHERE transaction_id = %(transaction_id)s AND region = ANY (%(regions)s)
ORDER BY event_time, status
"""
BY_ACCOUNT = """
SELECT transaction_id, status, event_time, account_id, counterparty_id, amount, currency, region,
       fraud_flag, ingested_at, topic, "partition", "offset"
FROM staging.transactions
WHERE account_id = %(account_id)s AND event_time >= %(start)s AND event_time < %(end)s AND region = ANY (%(regions)s)
ORDER BY event_time, transaction_id, status
LIMIT %(n)s
"""
PARTITIONS = """
SELECT table_name, partition_date, region, published_at, run_id, row_count, checks, staging_as_of, built_as_of,
       launched_by
FROM reporting.published_partitions
WHERE partition_date = %(day)s AND region = ANY (%(regions)s)
ORDER BY region, table_name
"""
# Each (table, region)'s latest publication: a skip scan over publication_log_latest (migration 0012).
LATEST_PUBLICATIONS = """
WITH RECURSIVE pairs AS (
    (SELECT table_name, region FROM reporting.publication_log ORDER BY table_name, region LIMIT 1)
    UNION ALL
    SELECT n.table_name, n.region
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT l.table_name, l.region FROM reporting.publication_log l
        WHERE (l.table_name, l.region) > (p.table_name, p.region)
        ORDER BY l.table_name, l.region LIMIT 1
    ) n
)
SELECT p.table_name, p.region, l.published_at, l.staging_as_of, d.latest_day
FROM pairs p
CROSS JOIN LATERAL (
    SELECT published_at, staging_as_of FROM reporting.publication_log l
    WHERE l.table_name = p.table_name AND l.region = p.region
    ORDER BY l.publication_id DESC LIMIT 1
) l
CROSS JOIN LATERAL (
    SELECT partition_date AS latest_day FROM reporting.publication_log l
    WHERE l.table_name = p.table_name AND l.region = p.region
    ORDER BY l.partition_date DESC LIMIT 1
) d
WHERE p.region = ANY (%(regions)s)
"""
# The batch log's counts of the last 15 minutes (BRIN index on committed_at).
RECENT_BATCHES = """
SELECT coalesce(sum(quarantined), 0) AS quarantined,
       coalesce(sum(landed + duplicates + quarantined), 0) AS consumed
FROM staging.ingest_batches
WHERE committed_at > now() - interval '15 minutes'
"""
# Dagster's storage: each check's latest evaluation per partition (the last two days), failures counted.
FAILED_CHECKS = """
SELECT asset_key, partition, count(*) AS failed
FROM (
    SELECT DISTINCT ON (asset_key, check_name, partition) asset_key, partition, execution_status
    FROM asset_check_executions
    WHERE create_timestamp > (now() AT TIME ZONE 'UTC') - interval '2 days'
      AND execution_status IN ('SUCCEEDED', 'FAILED')
    ORDER BY asset_key, check_name, partition, id DESC
) latest
WHERE execution_status = 'FAILED'
GROUP BY asset_key, partition
"""
DAGSTER_RUNS = """
SELECT status, count(*) AS runs FROM runs
WHERE status IN ('QUEUED', 'NOT_STARTED', 'STARTING', 'STARTED', 'CANCELING')
GROUP BY status
"""
LAST_FAILED_RUN = """
SELECT extract(epoch FROM max(update_timestamp) AT TIME ZONE 'UTC') AS at FROM runs WHERE status = 'FAILURE'
"""
SENSOR_TICKS = """
SELECT extract(epoch FROM max(timestamp) AT TIME ZONE 'UTC') AS last_tick,
       count(*) FILTER (WHERE status = 'FAILURE'
                        AND timestamp > (now() AT TIME ZONE 'UTC') - interval '10 minutes') AS failed_10m
FROM job_ticks WHERE type = 'SENSOR'
"""


def first_line(exc: BaseException) -> str:
    """An error's first line, for the server's log (never an answer)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), UTC)
    return start, start + timedelta(days=1)


class Store:
    """The pools (one per database and role, opened on first use) and the queries on them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pools: dict[str, ConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, dsn: str, role: Role) -> ConnectionPool:
        with self._lock:
            found = self._pools.get(dsn)
            if found is None:
                found = self._pools[dsn] = pool(dsn, size=self.settings.api_pool_size, purpose=f"api:{role.value}")
                found.open(wait=False)
            return found

    def close(self) -> None:
        with self._lock:
            for each in self._pools.values():
                each.close()
            self._pools.clear()

    def _rows(self, dsn: str, role: Role, query: str, params: dict[str, Any], timeout: float = POOL_TIMEOUT) -> list:
        with self._pool(dsn, role).connection(timeout=timeout) as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params, prepare=True).fetchall()

    def _by_database(self, regions: tuple[str, ...], role: Role) -> dict[str, tuple[str, ...]]:
        """The regions grouped by the database (connected as ``role``) that holds them."""
        out: defaultdict[str, list[str]] = defaultdict(list)
        for region in regions:
            out[self.settings.dsn_for_region(region, role)].append(region)
        return {dsn: tuple(found) for dsn, found in out.items()}

    # ------------------------------------------------------------------ the published tables
    def suspicious(
        self,
        role: Role,
        day: date,
        regions: tuple[str, ...],
        reason: str | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> tuple[list[dict], tuple[str, str] | None]:
        """One page in (region, transaction_id) order after ``after``; the key of its last row when more follow."""
        items: list[dict] = []
        start = regions.index(after[0]) if after else 0
        for region in regions[start:]:
            params = {
                "day": day,
                "region": region,
                "after": after[1] if after and region == after[0] else "",
                "reason": reason,
                "n": limit + 1 - len(items),  # one more than the page: whether another page follows
            }
            items += self._rows(self.settings.dsn_for_region(region, role), role, SUSPICIOUS, params)
            if len(items) > limit:
                break
        if len(items) <= limit:
            return items, None
        page = items[:limit]
        return page, (page[-1]["region"], page[-1]["transaction_id"])

    def settlements(self, role: Role, day: date, regions: tuple[str, ...]) -> list[dict]:
        rows: list[dict] = []
        for region in regions:
            rows += self._rows(
                self.settings.dsn_for_region(region, role), role, SETTLEMENTS, {"day": day, "region": region}
            )
        return rows

    def partitions(self, role: Role, day: date, regions: tuple[str, ...]) -> list[dict]:
        rows: list[dict] = []
        for dsn, held in self._by_database(regions, role).items():
            rows += self._rows(dsn, role, PARTITIONS, {"day": day, "regions": list(held)})
        return sorted(rows, key=lambda r: (regions.index(r["region"]), r["table_name"]))

    # ------------------------------------------------------------------ staging (analysts)
    def transactions(self, regions: tuple[str, ...], transaction_id: str) -> list[dict]:
        rows: list[dict] = []
        for dsn, held in self._by_database(regions, Role.API_ANALYST).items():
            params = {"transaction_id": transaction_id, "regions": list(held)}
            rows += self._rows(dsn, Role.API_ANALYST, BY_TRANSACTION, params)
        return sorted(rows, key=lambda r: (r["event_time"], r["status"]))

    def account_events(self, regions: tuple[str, ...], account_id: str, day: date) -> tuple[list[dict], bool]:
        """An account's events of one day, and whether there were more than MAX_ACCOUNT_EVENTS."""
        start, end = day_bounds(day)
        rows: list[dict] = []
        for dsn, held in self._by_database(regions, Role.API_ANALYST).items():
            params = {
                "account_id": account_id,
                "start": start,
                "end": end,
                "regions": list(held),
                "n": MAX_ACCOUNT_EVENTS + 1,
            }
            rows += self._rows(dsn, Role.API_ANALYST, BY_ACCOUNT, params)
        rows.sort(key=lambda r: (r["event_time"], r["transaction_id"], r["status"]))
        return rows[:MAX_ACCOUNT_EVENTS], len(rows) > MAX_ACCOUNT_EVENTS

    # ------------------------------------------------------------------ health and metrics
    def monitored(self) -> dict[str, tuple[str, ...]]:
        """Every database (as the monitoring role) with the regions it holds."""
        return {self.settings.as_role(dsn, Role.API_MONITOR): held for dsn, held in self.settings.databases().items()}

    def ping(self) -> dict[str, bool]:
        """Whether each database (named by the regions it holds, "home" for none) answers ``SELECT 1``
        within HEALTH_TIMEOUT; why one does not is logged here, never answered."""
        out = {}
        for dsn, held in self.monitored().items():
            name = ",".join(held) or "home"
            try:
                self._rows(dsn, Role.API_MONITOR, "SELECT 1 AS ok", {}, timeout=HEALTH_TIMEOUT)
                out[name] = True
            except Exception as exc:
                log.warning("health: database %s did not answer: %s", name, first_line(exc))
                out[name] = False
        return out

    def stored_positions(self) -> list[dict[int, int]]:
        """The stored Kafka positions of every database."""
        out = []
        for dsn in self.monitored():
            with self._pool(dsn, Role.API_MONITOR).connection(timeout=HEALTH_TIMEOUT) as conn:
                out.append(positions(conn, self.settings.topic))
        return out

    def latest_publications(self) -> list[dict]:
        rows: list[dict] = []
        for dsn, held in self.monitored().items():
            rows += self._rows(dsn, Role.API_MONITOR, LATEST_PUBLICATIONS, {"regions": list(held)}, HEALTH_TIMEOUT)
        return rows

    def recent_batches(self) -> tuple[int, int]:
        """Messages quarantined and consumed in the last 15 minutes, over every database."""
        quarantined = consumed = 0
        for dsn in self.monitored():
            (row,) = self._rows(dsn, Role.API_MONITOR, RECENT_BATCHES, {}, HEALTH_TIMEOUT)
            quarantined, consumed = quarantined + row["quarantined"], consumed + row["consumed"]
        return quarantined, consumed

    def dagster(self) -> dict[str, list[dict]]:
        """Failed checks per partition, runs in flight, the last failed run, the sensors' ticks."""
        dsn = self.settings.as_role(self.settings.dagster_admin_dsn, Role.API_MONITOR)
        return {
            name: self._rows(dsn, Role.API_MONITOR, query, {}, HEALTH_TIMEOUT)
            for name, query in (
                ("failed_checks", FAILED_CHECKS),
                ("runs", DAGSTER_RUNS),
                ("last_failed_run", LAST_FAILED_RUN),
                ("sensor_ticks", SENSOR_TICKS),
            )
        }
