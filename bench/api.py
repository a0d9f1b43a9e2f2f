"""The HTTP API: a day of published suspicious rows walked through `/suspicious` pages by a real `txmon api`
process, against a plain `SELECT` of the same rows (all at once, and page by page with the same keyset query)."""
# The rows are inserted straight into ``reporting.suspicious_activity`` of the benchmark database (this section
# measures reading what was published, not publishing it), spread over the three regions like the stream.

from __future__ import annotations

import json
import subprocess
import time
from datetime import date

import httpx

from bench.common import BenchError, percentiles, reset, txmon_argv
from txmon.api.store import SUSPICIOUS
from txmon.core.db import connect
from txmon.core.settings import Role, Settings

DAY = date(2026, 11, 2)
KEY = "bench-api-key-" + "0" * 32  # as long as a key must be
LOAD = """
INSERT INTO reporting.suspicious_activity (transaction_id, account_id, counterparty_id, region, amount, currency,
    amount_usd, threshold_usd, status, event_time, event_date, reasons, refreshed_at)
SELECT md5('api' || g::text)::uuid::text, 'acc-' || lpad((g %% 20000)::text, 6, '0'), 'mch-' || (g %% 2000),
       (ARRAY['EU', 'US', 'APAC'])[1 + g %% 3], round((10000 + random() * 90000)::numeric, 4), 'USD',
       round((10000 + random() * 90000)::numeric, 4), 10000, 'settled',
       %(day)s::date + make_interval(secs => g * 86000.0 / %(n)s), %(day)s,
       CASE WHEN g %% 10 = 0 THEN ARRAY['amount_over_threshold', 'fraud_flag'] ELSE ARRAY['amount_over_threshold'] END,
       now()
FROM generate_series(1, %(n)s) AS g
"""
COLUMNS = """transaction_id, account_id, counterparty_id, region, amount, currency, amount_usd, threshold_usd,
       status, event_time, event_date, reasons, refreshed_at"""
PLAIN = f"SELECT {COLUMNS} FROM reporting.suspicious_activity WHERE event_date = %s ORDER BY region, transaction_id"  # noqa: S608


def _walk(client: httpx.Client, page: int) -> tuple[list[float], int, float]:
    """Every page of DAY in order: each request's milliseconds, the rows, the seconds of the whole walk."""
    latencies, rows, cursor = [], 0, None
    started = time.perf_counter()
    while True:
        params = {"date": DAY.isoformat(), "limit": page, **({"cursor": cursor} if cursor else {})}
        sent = time.perf_counter()
        response = client.get("/suspicious", params=params)
        latencies.append((time.perf_counter() - sent) * 1000)
        if response.status_code != 200:
            raise BenchError(f"/suspicious answered {response.status_code}: {response.text[:200]}")
        body = response.json()
        rows += len(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return latencies, rows, time.perf_counter() - started


def _plain(settings: Settings, page: int) -> dict:
    """The same rows with psycopg alone, as the API's role: one SELECT, then the API's keyset query page by page."""
    with connect(settings.home_dsn(Role.API_REGULATOR), autocommit=True, purpose="bench") as conn:
        started = time.perf_counter()
        rows = len(conn.execute(PLAIN, (DAY,)).fetchall())
        whole = time.perf_counter() - started
        latencies, walked = [], 0
        started = time.perf_counter()
        for region in ("APAC", "EU", "US"):
            after = ""
            while True:
                sent = time.perf_counter()
                params = {"day": DAY, "region": region, "after": after, "reason": None, "n": page}
                found = conn.execute(SUSPICIOUS, params, prepare=True).fetchall()
                latencies.append((time.perf_counter() - sent) * 1000)
                walked += len(found)
                if len(found) < page:
                    break
                after = found[-1][0]
        paged = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": round(whole, 3),
        "rows_per_second": round(rows / whole),
        "keyset_page_ms": percentiles(latencies),
        "keyset_rows_per_second": round(walked / paged),
    }


def run(settings: Settings, env: dict[str, str], *, rows: int, page: int = 100, port: int = 18099) -> dict:
    reset(settings)
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        conn.execute(LOAD, {"day": DAY, "n": rows})
        conn.execute("VACUUM ANALYZE reporting.suspicious_activity")
    keys = {KEY: {"role": "regulator", "regions": ["*"]}}
    # The walks send thousands of requests a minute from one key and address: above the default rate limits.
    unlimited = {"TXMON_API_KEY_REQUESTS_PER_MINUTE": "1000000", "TXMON_API_ADDRESS_REQUESTS_PER_MINUTE": "1000000"}
    api_env = {**env, "TXMON_API_KEYS": json.dumps(keys), **unlimited}
    proc = subprocess.Popen(
        txmon_argv("api", "--port", str(port)), env=api_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("txmon api did not start")
            time.sleep(0.2)
        _walk(client, page)  # warm-up: connections, prepared statements, the table's pages in memory
        latencies, walked, seconds = [], 0, 0.0
        for _ in range(2):
            each, walked, took = _walk(client, page)
            latencies += each
            seconds += took
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if walked != rows:
        raise BenchError(f"the walk returned {walked:,} rows of {rows:,}")
    plain = _plain(settings, page)
    walk_rate = round(2 * walked / seconds)
    return {
        "rows": rows,
        "page_size": page,
        "pages_per_walk": len(latencies) // 2,
        "page_ms": percentiles(latencies),
        "walk_rows_per_second": walk_rate,
        "plain_select": plain,
        "walk_to_select": round(walk_rate / plain["rows_per_second"], 3),
    }
