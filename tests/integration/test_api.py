"""`txmon api` as users run it (a real server process over the real PostgreSQL and Kafka): keys and roles,
exact money, keyset pagination under concurrent inserts, hostile identifiers, bad parameters, health."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import REPO
from tests.integration.test_ingest import event, line
from tests.integration.test_live import expected, free_port
from txmon.core.db import connect
from txmon.core.settings import Role

DAY = date(2026, 11, 20)  # landed and published through the real path (produce, ingest, materialize)
PAGED = date(2026, 11, 21)  # many published rows, for pagination
KEYS = {
    "analyst-key-all": {"role": "analyst", "regions": ["*"]},
    "regulator-key-all": {"role": "regulator", "regions": ["*"]},
    "regulator-key-eu": {"role": "regulator", "regions": ["EU"]},
    "analyst-key-us": {"role": "analyst", "regions": ["US"]},
}


def secret(name: str) -> str:
    """The key a test names by ``name`` (KEYS' names are short; a key has 32 characters or more)."""
    return f"{name}-{'0' * 32}" if name in KEYS else name


HOSTILE = [
    "x' OR '1'='1",
    "%",
    "_",
    "日本-💸",
    'a"; DROP TABLE staging.transactions; --',
    "  spaced  ",
    "back\\slash",
]
HOSTILE_ACCOUNT = "acc' OR 1=1 --"
# A cursor shaped like the API's own, resuming after a key PostgreSQL cannot hold (a NUL).
NUL_CURSOR = (
    base64.urlsafe_b64encode(
        json.dumps([1, {"date": str(DAY), "region": None, "reason": None}, "EU", "a\x00"]).encode()
    )
    .decode()
    .rstrip("=")
)


def at(hour: int, minute: int = 0) -> str:
    return f"{DAY}T{hour:02d}:{minute:02d}:00Z"


EVENTS = [
    event("api-eu-1", amount="10000.0100", currency="USD", region="EU", event_time=at(9)),
    event("api-eu-2", amount="12.34", currency="EUR", region="EU", fraud_flag=True, event_time=at(9, 5)),
    event("api-eu-3", amount="0.10", currency="EUR", region="EU", event_time=at(9, 10)),
    event("api-eu-4", amount="0.20", currency="EUR", region="EU", event_time=at(9, 11)),
    event("api-us-1", "pending", amount="25000.00", currency="USD", region="US", event_time=at(10)),
    event("api-us-1", "settled", amount="25000.00", currency="USD", region="US", event_time=at(10, 30)),
    event("api-us-2", amount="99.99", currency="USD", region="US", event_time=at(11)),
    *[
        event(tx, amount=f"{i + 1}.01", currency="EUR", region="EU", event_time=at(12, i), account_id=HOSTILE_ACCOUNT)
        for i, tx in enumerate(HOSTILE)
    ],
]


class Api:
    def __init__(self, base: str, proc: subprocess.Popen, log) -> None:
        self.base, self.proc, self.log = base, proc, log
        self.client = httpx.Client(base_url=base, timeout=30)

    def get(self, path: str, key: str | None = "analyst-key-all", **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret(key)}"} if key else {}
        return self.client.get(path, params=params, headers=headers)

    def ok(self, path: str, key: str | None = "analyst-key-all", **params) -> dict:
        response = self.get(path, key, **params)
        assert response.status_code == 200, response.text
        return response.json()


@contextmanager
def running_api(platform, tmp_path, env_extra: dict[str, str] | None = None, ready: int = 200):
    """`txmon api` on a free port, its log in tmp_path; waits until /health answers ``ready``."""
    port = free_port()
    log = tmp_path / f"api-{port}.log"
    env = {**platform.env, "TXMON_API_KEYS": json.dumps({secret(k): g for k, g in KEYS.items()}), **(env_extra or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "txmon.cli", "api", "--port", str(port)], env=env, cwd=REPO, stdout=out, stderr=out
        )
    api = Api(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if api.client.get("/health").status_code == ready:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the API did not answer: {log.read_text()}"
            time.sleep(0.2)
        yield api
    finally:
        api.client.close()
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def landed(module_platform, tmp_path_factory):
    """DAY's events produced, landed and published (EU and US; APAC's slice empty); PAGED's rows published
    directly."""
    platform = module_platform
    source = tmp_path_factory.mktemp("api") / "events.jsonl"
    source.write_text("\n".join(line(e) for e in EVENTS) + "\n")
    platform.txmon("produce", str(source))
    platform.txmon("ingest", "--until-idle")
    platform.txmon("backfill", "--from", DAY.isoformat(), "--to", DAY.isoformat())  # every region, APAC empty
    insert_published(platform, PAGED, [(f"p-{i:05d}", ("EU", "US", "APAC")[i % 3]) for i in range(2500)])
    return platform


def insert_published(platform, day: date, rows: list[tuple[str, str]]) -> None:
    """Rows in reporting.suspicious_activity, as a publication leaves them."""
    with connect(platform.settings.warehouse_dsn, purpose="test") as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO reporting.suspicious_activity (transaction_id, account_id, counterparty_id, region, amount,
                   currency, amount_usd, threshold_usd, status, event_time, event_date, reasons, refreshed_at)
               VALUES (%s, 'acc-' || %s, NULL, %s, 20000.0000, 'USD', 20000.0000, 10000, 'settled',
                       %s::date + time '12:00', %s, ARRAY['amount_over_threshold'], now())""",
            [(tx, tx, region, day, day) for tx, region in rows],
        )


@pytest.fixture(scope="module")
def api(landed, tmp_path_factory):
    with running_api(landed, tmp_path_factory.mktemp("api-log")) as running:
        yield running


# ---------------------------------------------------------------------------------- keys and roles
def test_keys_roles_and_regions(api):
    for key in (None, "wrong-key"):
        response = api.get("/suspicious", key, date=str(DAY))
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert "key" in response.json()["error"]
    basic = api.client.get("/suspicious", params={"date": str(DAY)}, headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401

    # A regulator reads the published tables, never staging.
    assert api.get("/transactions", "regulator-key-all", transaction_id="api-eu-1").status_code == 403
    assert api.ok("/suspicious", "regulator-key-all", date=str(DAY))["items"]
    # Region scoping: asked for a region outside the key: 403; not asked: the key's regions only.
    assert api.get("/suspicious", "regulator-key-eu", date=str(DAY), region="US").status_code == 403
    assert api.get("/settlements", "regulator-key-eu", date=str(DAY), region="US").status_code == 403
    assert {i["region"] for i in api.ok("/suspicious", "regulator-key-eu", date=str(DAY))["items"]} == {"EU"}
    assert {i["region"] for i in api.ok("/settlements", "regulator-key-eu", date=str(DAY))["items"]} == {"EU"}
    assert {i["region"] for i in api.ok("/suspicious", "analyst-key-all", date=str(DAY))["items"]} == {"EU", "US"}
    # An analyst of US does not find an EU transaction (it exists: the EU-wide analyst finds it).
    assert api.ok("/transactions", "analyst-key-us", transaction_id="api-eu-1")["items"] == []
    assert len(api.ok("/transactions", "analyst-key-all", transaction_id="api-eu-1")["items"]) == 1
    assert api.ok("/me", "regulator-key-eu") == {"role": "regulator", "regions": ["EU"]}


def test_database_roles_hold_the_same_limits(landed):
    """The API's database roles: a regulator's connection cannot read staging, none can write."""
    settings = landed.settings
    with connect(settings.home_dsn(Role.API_REGULATOR), autocommit=True, purpose="test") as conn:
        assert conn.execute("SELECT count(*) FROM reporting.suspicious_activity").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 1 FROM staging.transactions LIMIT 1")
    with connect(settings.home_dsn(Role.API_ANALYST), autocommit=True, purpose="test") as conn:
        assert conn.execute("SELECT count(*) FROM staging.transactions").fetchone()[0] == len(EVENTS)
        for statement in (
            "SELECT 1 FROM staging.rejected_transactions",
            "SELECT 1 FROM staging.raw_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        conn.execute("SET default_transaction_read_only = off")  # the role may; its grants still refuse
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM reporting.suspicious_activity")
    with connect(settings.home_dsn(Role.API_MONITOR), autocommit=True, purpose="test") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 1 FROM reporting.suspicious_activity")


# ---------------------------------------------------------------------------------- the data, exactly
def test_money_is_exact_and_times_are_utc(api):
    raw = api.get("/suspicious", date=str(DAY), region="EU")
    assert '"amount":"10000.0100"' in raw.text, "money is a decimal string, never a JSON number"
    items = {i["transaction_id"]: i for i in raw.json()["items"]}
    assert set(items) == {"api-eu-1", "api-eu-2"}
    assert items["api-eu-1"]["amount"] == "10000.0100"
    assert Decimal(items["api-eu-1"]["amount_usd"]) == Decimal("10000.01")
    assert items["api-eu-1"]["reasons"] == ["amount_over_threshold"]
    assert items["api-eu-2"]["reasons"] == ["fraud_flag"]
    assert items["api-eu-1"]["event_time"] == "2026-11-20T09:00:00Z"

    settlements, suspicious = expected(EVENTS)
    got = {
        (date.fromisoformat(i["settlement_date"]), i["region"], i["currency"]): (
            i["transaction_count"],
            i["settled_count"],
            i["settled_volume"],
        )
        for i in api.ok("/settlements", date=str(DAY))["items"]
    }
    assert got == {k: (n, s, f"{v:.4f}") for k, (n, s, v) in settlements.items() if k[0] == DAY}
    assert got[(DAY, "EU", "EUR")][2] == "40.7100"  # 12.34 + 0.10 + 0.20 + (1.01 + 2.01 + ... + 7.01), to the cent
    by_reason = api.ok("/suspicious", date=str(DAY), reason="fraud_flag")["items"]
    assert [i["transaction_id"] for i in by_reason] == ["api-eu-2"]
    assert {tx for tx, (d, _, _) in suspicious.items() if d == DAY} == {
        i["transaction_id"] for i in api.ok("/suspicious", date=str(DAY))["items"]
    }


def test_transactions_carry_their_kafka_position(api, landed):
    items = api.ok("/transactions", transaction_id="api-us-1")["items"]
    assert [i["status"] for i in items] == ["pending", "settled"]
    stored = landed.query(
        """SELECT status, topic, "partition", "offset" FROM staging.transactions
           WHERE transaction_id = 'api-us-1' ORDER BY event_time"""
    )
    assert [(i["status"], i["topic"], i["partition"], i["offset"]) for i in items] == [tuple(r) for r in stored]
    assert items[0]["amount"] == "25000.0000"


def test_hostile_identifiers_are_looked_up_verbatim(api):
    for tx in HOSTILE:
        items = api.ok("/transactions", transaction_id=tx)["items"]
        assert [i["transaction_id"] for i in items] == [tx], tx
    assert api.ok("/transactions", transaction_id="x")["items"] == []
    assert api.ok("/transactions", transaction_id="'")["items"] == []
    by_account = api.ok("/transactions", account_id=HOSTILE_ACCOUNT, date=str(DAY))
    assert sorted(i["transaction_id"] for i in by_account["items"]) == sorted(HOSTILE)
    assert by_account["truncated"] is False
    assert api.ok("/transactions", account_id="acc' OR 1=1 -", date=str(DAY))["items"] == []


# ---------------------------------------------------------------------------------- pagination
def walk(api, limit: int, **params) -> list[str]:
    seen, cursor = [], None
    while True:
        page = api.ok("/suspicious", date=str(PAGED), limit=limit, **({"cursor": cursor} if cursor else {}), **params)
        assert len(page["items"]) <= limit
        seen += [i["transaction_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_pagination_walks_every_row_once_while_rows_are_inserted(api, landed):
    before = {
        tx
        for (tx,) in landed.query(
            "SELECT transaction_id FROM reporting.suspicious_activity WHERE event_date = %s", (PAGED,)
        )
    }
    stop = threading.Event()

    def insert() -> None:
        n = 0
        while not stop.is_set():
            insert_published(
                landed,
                PAGED,
                [(f"{prefix}-new-{n}", region) for prefix, region in (("a", "EU"), ("p-00500", "US"), ("z", "APAC"))],
            )
            n += 1
            time.sleep(0.01)

    writer = threading.Thread(target=insert)
    writer.start()
    try:
        seen = walk(api, 97)
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen)), "no row twice"
    assert before <= set(seen), f"missed {len(before - set(seen))} rows"
    regions = [tx for tx in seen if tx in before]
    assert len(regions) == 2500

    eu_only = walk(api, 1000, region="EU")
    assert all(tx.startswith(("p-", "a-new", "p-00500-new")) for tx in eu_only)
    assert len(set(eu_only)) == len(eu_only)


def test_a_cursor_is_tied_to_its_query(api):
    first = api.ok("/suspicious", date=str(PAGED), limit=10)
    assert first["next_cursor"]
    other_day = api.get("/suspicious", date=str(DAY), cursor=first["next_cursor"])
    assert other_day.status_code == 400 and "another query" in other_day.json()["error"]
    for bad in ("garbage", "W10", "eyJhIjoxfQ", "!!!"):
        response = api.get("/suspicious", date=str(PAGED), cursor=bad)
        assert response.status_code == 400 and "cursor" in response.json()["error"], bad
    # A cursor stops in a region: one that stopped in US does not take an EU regulator there.
    into_us = api.ok("/suspicious", date=str(PAGED), limit=900)  # EU holds 834 of PAGED's rows
    assert into_us["items"][-1]["region"] == "US"
    eu = api.get("/suspicious", "regulator-key-eu", date=str(PAGED), cursor=into_us["next_cursor"])
    assert eu.status_code == 400, eu.text


# ---------------------------------------------------------------------------------- bad input, health
@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/suspicious", {}, "date"),
        ("/suspicious", {"date": "2026-02-30"}, "calendar day"),
        ("/suspicious", {"date": "20-11-2026"}, "YYYY-MM-DD"),
        ("/suspicious", {"date": "2026-11-20T00:00:00"}, "YYYY-MM-DD"),
        ("/suspicious", {"date": str(DAY), "limit": "0"}, "limit"),
        ("/suspicious", {"date": str(DAY), "limit": "1001"}, "limit"),
        ("/suspicious", {"date": str(DAY), "limit": "ten"}, "limit"),
        ("/suspicious", {"date": str(DAY), "region": "MARS"}, "region"),
        ("/suspicious", {"date": str(DAY), "region": "eu"}, "region"),
        ("/suspicious", {"date": str(DAY), "reason": "x'; --"}, "reason"),
        ("/settlements", {"date": "yesterday"}, "date"),
        ("/transactions", {}, "transaction_id"),
        ("/transactions", {"transaction_id": "a", "account_id": "b"}, "either"),
        ("/transactions", {"account_id": "b"}, "either"),
        ("/transactions", {"transaction_id": "x" * 65}, "1 to 64"),
        ("/transactions", {"transaction_id": "a\x00b"}, "NUL"),
        ("/transactions", {"account_id": "a", "date": "9999-12-31"}, "out of range"),
        ("/suspicious", {"date": str(DAY), "cursor": NUL_CURSOR}, "cursor"),
    ],
)
def test_bad_parameters_are_400_with_a_readable_error(api, path, params, says):
    response = api.get(path, **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"} and says in body["error"]
    assert "Traceback" not in response.text


def test_health_metrics_and_openapi(api, landed):
    assert api.ok("/health", None) == {
        "status": "ok",
        "databases": {",".join(landed.settings.regions): "ok"},
        "kafka": "ok",
    }
    metrics = api.get("/metrics", None)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'txmon_consumer_lag{partition="0"} 0.0' in text
    for mart in ("suspicious_activity", "daily_settlements"):
        for region in ("EU", "US"):
            assert f'txmon_mart_freshness_seconds{{mart="{mart}",region="{region}"}}' in text
    assert 'txmon_api_requests_total{path="/health",status="200"}' in text
    spec = api.ok("/openapi.json", None)
    assert {"/suspicious", "/settlements", "/transactions", "/health", "/metrics"} <= set(spec["paths"])
    assert spec["components"]["schemas"]["Suspicious"]["properties"]["amount"]["type"] == "string"
    assert "422" not in json.dumps(spec["paths"])
    docs = api.get("/docs", None)
    assert docs.status_code == 200 and "/static-docs/swagger-ui-bundle.js" in docs.text
    assert api.get("/static-docs/swagger-ui-bundle.js", None).status_code == 200


def test_request_log_names_no_account(api):
    api.ok("/transactions", account_id=HOSTILE_ACCOUNT, date=str(DAY))
    api.ok("/transactions", transaction_id="api-eu-1")
    time.sleep(0.5)
    log = api.log.read_text()
    assert "GET /transactions 200" in log and "params=account_id,date" in log
    assert HOSTILE_ACCOUNT not in log and "api-eu-1" not in log and "acc-api" not in log


def test_health_is_503_when_the_database_is_down(landed, tmp_path):
    with running_api(landed, tmp_path, {"TXMON_PG_PORT": str(free_port())}, ready=503) as down:
        health = down.get("/health", None)
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        # Which source is down, never why: the error (host, port, libpq's words) stays in the server's log.
        assert health.json()["databases"] == {",".join(landed.settings.regions): "unavailable"}
        assert health.json()["kafka"] == "ok"
        for detail in ("connection", "refused", "127.0.0.1", "port", "failed"):
            assert detail not in health.text.lower(), health.text
        time.sleep(0.5)
        assert "health: database" in down.log.read_text()
        response = down.get("/suspicious", date=str(DAY))
        assert response.status_code == 503 and "not answering" in response.json()["error"]
        assert "Traceback" not in response.text
        assert 'txmon_source_up{source="postgresql"} 0.0' in down.get("/metrics", None).text


def test_a_day_without_publications_is_empty_not_an_error(api):
    future = (DAY - timedelta(days=300)).isoformat()
    assert api.ok("/suspicious", date=future) == {"items": [], "next_cursor": None}
    assert api.ok("/settlements", date=future) == {"items": []}
    assert api.ok("/partitions", date=future) == {"items": []}
    partitions = api.ok("/partitions", date=str(DAY))["items"]
    assert {(p["table_name"], p["region"]) for p in partitions} == {
        (t, r) for t in ("daily_settlements", "suspicious_activity") for r in ("EU", "US", "APAC")
    }
    assert all(all(c["passed"] for c in p["checks"].values()) for p in partitions)


# ---------------------------------------------------------------------------------- under load and at the edges
SECURITY = {
    "content-security-policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def test_every_answer_carries_the_security_headers(api):
    answers = [
        api.get("/", None),
        api.get("/static/app.js", None),
        api.get("/docs", None),
        api.get("/openapi.json", None),
        api.get("/health", None),
        api.get("/metrics", None),
        api.get("/suspicious", date=str(DAY)),
        api.get("/suspicious", None, date=str(DAY)),  # 401
        api.get("/suspicious", date="2026-02-30"),  # 400
        api.get("/transactions", "regulator-key-all", transaction_id="x"),  # 403
        api.get("/no-such-path", None),  # 404
        api.client.post("/suspicious"),  # 405
    ]
    assert [a.status_code for a in answers] == [200] * 7 + [401, 400, 403, 404, 405]
    for answer in answers:
        for name, value in SECURITY.items():
            if answer.request.url.path == "/docs" and name == "content-security-policy":
                value = value.replace("default-src 'self';", "default-src 'self'; img-src 'self' data:;")
            assert answer.headers.get(name) == value, (answer.request.url, name)


def test_health_names_kafka_when_it_is_down(landed, tmp_path):
    with running_api(landed, tmp_path, {"TXMON_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}) as no_kafka:
        health = no_kafka.get("/health", None)
        assert health.status_code == 200, health.text  # the API answers without Kafka: it reads the databases
        assert health.json()["kafka"] == "unavailable" and health.json()["status"] == "ok"
        assert set(health.json()["databases"].values()) == {"ok"}
        assert 'txmon_source_up{source="kafka"} 0.0' in no_kafka.get("/metrics", None).text
        assert no_kafka.ok("/suspicious", date=str(DAY))["items"]


def readings(api) -> float:
    (line,) = [
        x for x in api.get("/metrics", None).text.splitlines() if x.startswith("txmon_api_metrics_readings_total")
    ]
    return float(line.split()[-1])


def test_metrics_are_read_once_per_interval_whatever_the_scrape_rate(landed, tmp_path):
    """40 scrapes at once share one reading of the sources; a loop of scrapes costs one reading per interval,
    and authenticated requests meanwhile answer as fast as without it."""
    interval = 5
    env = {"TXMON_API_STATUS_CACHE_SECONDS": str(interval), "TXMON_API_ADDRESS_REQUESTS_PER_MINUTE": "1000000"}
    with running_api(landed, tmp_path, env) as scraped:  # no rate limit in the way: the reading alone
        clients = [httpx.Client(base_url=scraped.base, timeout=30) for _ in range(8)]
        try:
            barrier = threading.Barrier(40)

            def scrape(n: int) -> int:
                barrier.wait()
                return clients[n % 8].get("/metrics").status_code

            started = time.monotonic()
            with ThreadPoolExecutor(40) as pool:
                assert set(pool.map(scrape, range(40))) == {200}
            assert readings(scraped) == 1.0, "40 concurrent scrapes share one reading"

            stop = threading.Event()
            scrapes = []

            def loop(client: httpx.Client) -> None:
                while not stop.is_set():
                    scrapes.append(client.get("/metrics").status_code)

            loopers = [threading.Thread(target=loop, args=(c,)) for c in clients[:4]]
            for looper in loopers:
                looper.start()
            times = []
            try:
                while time.monotonic() - started < interval + 2:  # past one interval: a second reading
                    t0 = time.perf_counter()
                    assert scraped.ok("/suspicious", date=str(DAY))["items"]
                    times.append(time.perf_counter() - t0)
            finally:
                stop.set()
                for looper in loopers:
                    looper.join()
            elapsed = time.monotonic() - started
            assert len(scrapes) > 100 and set(scrapes) == {200}
            assert sorted(times)[len(times) // 2] < 0.25, times  # the median authenticated request
            assert 2 <= readings(scraped) <= 2 + elapsed // interval, (readings(scraped), elapsed, len(scrapes))
        finally:
            for client in clients:
                client.close()


def test_a_burst_over_a_keys_limit_is_429_with_retry_after_and_starves_no_other_key(landed, tmp_path):
    limits = {"TXMON_API_KEY_REQUESTS_PER_MINUTE": "5", "TXMON_API_ADDRESS_REQUESTS_PER_MINUTE": "1000"}
    with running_api(landed, tmp_path, limits) as limited:
        assert [limited.get("/me").status_code for _ in range(5)] == [200] * 5
        over = limited.get("/suspicious", date=str(DAY))
        assert over.status_code == 429 and over.headers["retry-after"] == "12", over.text  # 5 a minute
        assert set(over.json()) == {"error"} and "this key" in over.json()["error"]
        assert limited.ok("/suspicious", "analyst-key-us", date=str(DAY))["items"]  # another key
        assert limited.get("/me", "regulator-key-eu").status_code == 200


def test_a_burst_over_an_addresss_limit_is_429_and_starves_no_other_address(landed, tmp_path):
    """Addresses as a local reverse proxy names them (X-Forwarded-For, trusted from 127.0.0.1 only)."""
    limits = {"TXMON_API_KEY_REQUESTS_PER_MINUTE": "1000", "TXMON_API_ADDRESS_REQUESTS_PER_MINUTE": "6"}
    with running_api(landed, tmp_path, limits) as limited:
        one, other = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
        statuses = [limited.client.get("/metrics", headers=one).status_code for _ in range(8)]
        assert statuses == [200] * 6 + [429] * 2
        over = limited.client.get(
            "/suspicious", params={"date": str(DAY)}, headers={**one, **bearer("analyst-key-all")}
        )
        assert over.status_code == 429 and int(over.headers["retry-after"]) == 10
        assert "this address" in over.json()["error"]
        fine = limited.client.get(
            "/suspicious", params={"date": str(DAY)}, headers={**other, **bearer("analyst-key-all")}
        )
        assert fine.status_code == 200 and fine.json()["items"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(key)}"}


@pytest.mark.parametrize("key", ["analyst-key-all", "regulator-key-eu"])
def test_an_openapi_fuzzer_finds_nothing(landed, tmp_path, key):
    """Schemathesis, every check, every phase, against the live API with a real key (an analyst's of every
    region; a regulator's of one, whose answers include the 403s): what the document declares valid is
    answered, what it declares invalid is a 400, every answer is declared (status, headers, content type,
    body)."""
    generous = {"TXMON_API_KEY_REQUESTS_PER_MINUTE": "1000000", "TXMON_API_ADDRESS_REQUESTS_PER_MINUTE": "1000000"}
    with running_api(landed, tmp_path, generous) as fuzzed:
        # Run in tmp_path (Schemathesis keeps a .schemathesis/ cache where it runs), the hooks from the repository.
        pythonpath = os.pathsep.join(filter(None, [str(REPO), landed.env.get("PYTHONPATH")]))
        env = {**landed.env, "PYTHONPATH": pythonpath, "SCHEMATHESIS_HOOKS": "tests.integration.fuzz_hooks"}
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{fuzzed.base}/openapi.json",
                "--checks=all",
                f"--header=Authorization: Bearer {secret(key)}",  # the real key on every request
                "--generation-with-security-parameters=false",  # (ignored_auth still tries without it)
                "--max-examples=150",
                "--workers=2",
                "--request-timeout=10",
                "--generation-database=none",
                "--no-color",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        print(run.stdout[-6000:])  # its summary: operations, phases, checks (pytest -rP shows it)
        assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]


# ---------------------------------------------------------------------------------- the web page, in Chromium
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/bootstrap (Playwright's own download cannot work here)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no calls home
    "--disable-component-update",
    "--disable-sync",
]


POLICY = "Content Security Policy"  # how Chromium's console names a violation of it


def test_the_web_page_shows_published_activity_and_settlements(api):
    settled_eu = sum(i["settled_count"] for i in api.ok("/settlements", date=str(DAY), region="EU")["items"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            errors: list[str] = []

            def watched(page):
                """A new page whose errors and security-policy violations (shown on the console) go to errors."""
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda message: errors.append(message.text) if POLICY in message.text else None)
                return page

            page = watched(browser.new_page())
            page.goto(api.base + "/")
            page.fill("#key", "wrong-key")
            page.click("#key-form button")
            page.wait_for_selector("#error:not([hidden])")
            assert "unknown key" in page.inner_text("#error")

            page.fill("#key", secret("analyst-key-all"))
            page.click("#key-form button")
            page.wait_for_selector("#main:not([hidden])")
            page.fill("#day", str(DAY))
            page.dispatch_event("#day", "change")
            row = page.wait_for_selector('#suspicious tr[data-transaction-id="api-eu-1"]')
            assert row.query_selector(".amount").inner_text() == "10000.0100"
            assert "amount_over_threshold" in row.inner_text()
            assert page.query_selector('#suspicious tr[data-transaction-id="api-eu-2"]') is not None

            bar = page.wait_for_selector(
                f'#settlements-chart rect[data-day="{DAY}"][data-region="EU"]', state="attached"
            )
            assert int(bar.get_attribute("data-value")) == settled_eu > 0
            assert float(bar.get_attribute("height")) > 0
            assert "EUR" in page.inner_text("#settlements") and "40.7100" in page.inner_text("#settlements")
            page.wait_for_selector("#partitions td.ok")
            assert "suspicious_activity" in page.inner_text("#partitions")
            # The day's report packages, verified, each file a download (fetched with the key).
            packages = page.locator("#reports tbody tr")
            expect(packages).to_have_count(3)  # EU, US and APAC (its empty day is published too)
            expect(packages.first.locator("td").first).to_have_text("EU")
            expect(packages.first.locator("td.ok")).to_have_text("verified")
            with page.expect_download() as saved:
                packages.first.get_by_role("button", name="manifest.json").click()
            manifest = json.loads(Path(saved.value.path()).read_text())
            assert (manifest["region"], manifest["day"], manifest["version"]) == ("EU", str(DAY), 1)

            page.select_option("#reason", "fraud_flag")
            # (Locator assertions, not a JavaScript predicate: the page's policy refuses eval, the test's too.)
            rows = page.locator("#suspicious tbody tr")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-transaction-id", "api-eu-2")
            assert errors == []

            # The interactive docs, under the same policy: Swagger UI renders every operation.
            docs = watched(browser.new_page())
            docs.goto(api.base + "/docs")
            docs.wait_for_selector("#operations-published-suspicious_suspicious_get")
            assert docs.query_selector("#operations-staging-transactions_transactions_get") is not None
            docs.click("#operations-published-suspicious_suspicious_get .opblock-summary")
            docs.wait_for_selector("#operations-published-suspicious_suspicious_get .parameters")
            assert "^(?!0001-01-01$|9999-12-31$)" in docs.inner_text("#operations-published-suspicious_suspicious_get")
            assert errors == []

            # ReDoc too; the one thing its policy refuses is the logo it would fetch from Redocly's CDN.
            redoc = watched(browser.new_page())
            redoc.goto(api.base + "/redoc")
            redoc.wait_for_selector('[id="tag/published/operation/suspicious_suspicious_get"]')
            assert [e for e in errors if "cdn.redoc.ly" not in e] == []
        finally:
            browser.close()
