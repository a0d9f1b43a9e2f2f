"""The API's edges without a database: its OpenAPI document declares exactly what its parameters accept, rate
limits, the shared reading behind /metrics and /health, the security headers on every kind of response."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import date

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from txmon.api import limits
from txmon.api.app import REDOC_POLICY, SECURITY_HEADERS, SWAGGER_UI_POLICY, create_app
from txmon.api.cache import Cached
from txmon.api.limits import Limited, RateLimit
from txmon.api.params import Cursor, Day, Identifier, Reason, region_type
from txmon.core.settings import Settings

KEYS = {
    "analyst-key-00000000000000000000000000000000": {"role": "analyst", "regions": ["*"]},
    "regulator-key-00000000000000000000000000000000": {"role": "regulator", "regions": ["EU"]},
    "other-key-00000000000000000000000000000000": {"role": "analyst", "regions": ["*"]},
}
SETTINGS = Settings(api_keys=KEYS)


@pytest.fixture(scope="module")
def spec() -> dict:
    return create_app(SETTINGS).openapi()


def parameter(spec: dict, path: str, name: str) -> dict:
    """A query parameter's declared schema (in /transactions' lookup object, its property)."""
    for each in spec["paths"][path]["get"]["parameters"]:
        if each["name"] == name:
            return each["schema"]
        for branch in each["schema"].get("oneOf", []):
            if name in branch["properties"]:
                return branch["properties"][name]
    raise AssertionError(f"{path} declares no {name}")


def accepts(kind: object, text: str) -> bool:
    try:
        TypeAdapter(kind).validate_python(text)
    except ValidationError:
        return False
    return True


# ---------------------------------------------------------------------------------- declared = enforced
TYPES = [
    ("/suspicious", "date", Day),
    ("/transactions", "date", Day),
    ("/transactions", "transaction_id", Identifier),
    ("/transactions", "account_id", Identifier),
    ("/suspicious", "reason", Reason),
    ("/suspicious", "cursor", Cursor),
    ("/suspicious", "region", region_type(SETTINGS.regions)),
]
EDGES = [
    "",
    " ",
    "2026-11-20",
    "2026-02-30",
    "2024-02-29",
    "0000-01-01",
    "0001-01-01",
    "0001-01-02",
    "9999-12-30",
    "9999-12-31",
    "20261120",
    "2026-11-20T00:00:00",
    "2026-11-20\n",
    "\uff12\uff10\uff12\uff16-11-20",  # full-width digits
    "fraud_flag",
    "fraud_flag\n",
    "Fraud",
    "a" * 64,
    "a" * 65,
    "a\x00b",
    "x' OR '1'='1",
    "日本-💸",
    "W10",
    "eyJhIjoxfQ",
    "!!!",
    "EU",
    "eu",
    "MARS",
]


def text_near(pattern: str | None) -> st.SearchStrategy[str]:
    near = [st.text(max_size=80), st.sampled_from(EDGES), st.dates().map(date.isoformat)]
    if pattern:
        near.append(st.from_regex(pattern, fullmatch=True))
    return st.one_of(near)


@pytest.mark.parametrize(("path", "name", "kind"), TYPES, ids=[f"{p} {n}" for p, n, _ in TYPES])
def test_the_document_declares_exactly_what_a_parameter_accepts(spec, path, name, kind):
    """Any text is accepted by the parameter's type exactly when the document's schema (JSON Schema with
    ECMA-262 patterns and formats, as OpenAPI tools read it) says it is valid."""
    declared = parameter(spec, path, name)
    validator = jsonschema_rs.validator_for(declared, validate_formats=True)

    @settings(max_examples=300, deadline=None)
    @given(text_near(declared.get("pattern")))
    def agree(text: str) -> None:
        assert accepts(kind, text) == validator.is_valid(text), (text, declared)

    agree()
    for text in EDGES:
        assert accepts(kind, text) == validator.is_valid(text), (text, declared)


def test_limits_and_enums_are_declared(spec):
    limit = parameter(spec, "/suspicious", "limit")
    assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == ("integer", 1, 1000, 100)
    assert parameter(spec, "/settlements", "region")["enum"] == list(SETTINGS.regions)
    assert parameter(spec, "/suspicious", "date")["format"] == "date"
    # No parameter is declared nullable: a query string cannot carry a null.
    assert '"null"' not in str(spec["paths"]).replace("'", '"')


def test_transactions_declares_its_two_lookups(spec):
    (lookup,) = spec["paths"]["/transactions"]["get"]["parameters"]
    assert (lookup["in"], lookup["style"], lookup["explode"], lookup["required"]) == ("query", "form", True, True)
    validator = jsonschema_rs.validator_for(lookup["schema"], validate_formats=True)
    assert validator.is_valid({"transaction_id": "t"})
    assert validator.is_valid({"transaction_id": "t", "region": "EU"})
    assert validator.is_valid({"account_id": "a", "date": "2026-11-20"})
    for refused in (
        {},
        {"region": "EU"},
        {"account_id": "a"},
        {"date": "2026-11-20"},
        {"transaction_id": "t", "account_id": "a"},
        {"transaction_id": "t", "date": "2026-11-20"},
        {"transaction_id": "t", "account_id": "a", "date": "2026-11-20"},
        {"transaction_id": ""},
        {"account_id": "a", "date": ""},
    ):
        assert not validator.is_valid(refused), refused


def test_every_operation_declares_its_errors(spec):
    operations = {path: methods["get"] for path, methods in spec["paths"].items()}
    for path, operation in operations.items():
        responses = operation["responses"]
        assert "422" not in responses, path
        assert responses["429"]["headers"]["Retry-After"]["required"] is True, path
        if operation.get("security"):
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True, path
    for path in ("/suspicious", "/settlements", "/partitions", "/transactions"):
        assert {"200", "400", "401", "403", "429", "503"} == set(operations[path]["responses"]), path
    assert set(operations["/me"]["responses"]) == {"200", "401", "429"}
    assert set(operations["/health"]["responses"]) == {"200", "503", "429"}
    assert set(operations["/metrics"]["responses"]) == {"200", "429"}
    assert set(operations["/metrics"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(operations["/reports"]["responses"]) == {"200", "400", "401", "403", "429"}
    assert set(operations["/reports/public-key"]["responses"]) == {"200", "404", "429"}
    files = operations["/reports/{region}/{day}/{version}/{name}"]
    assert set(files["responses"]) == {"200", "400", "401", "403", "404", "429"}
    assert "text/csv" in files["responses"]["200"]["content"]
    names = spec["components"]["schemas"]["FileName"]["enum"]
    assert "manifest.json" in names and "report.xlsx" in names and "public-key.pem" not in names


# ---------------------------------------------------------------------------------- over HTTP, no database
@pytest.fixture
def client():
    with TestClient(create_app(SETTINGS)) as each:
        yield each


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/", {}, 200),
        ("/static/app.js", {}, 200),
        ("/docs", {}, 200),
        ("/redoc", {}, 200),
        ("/static/docs.js", {}, 200),
        ("/openapi.json", {}, 200),
        ("/me", bearer("analyst-key-00000000000000000000000000000000"), 200),
        ("/me", {}, 401),
        ("/transactions?transaction_id=t", bearer("regulator-key-00000000000000000000000000000000"), 403),
        ("/suspicious?date=2026-13-01", bearer("analyst-key-00000000000000000000000000000000"), 400),
        ("/no-such-path", {}, 404),
    ],
)
def test_every_response_carries_the_security_headers(client, path, headers, status):
    response = client.get(path, headers=headers)
    assert response.status_code == status, response.text
    own = {"/docs": SWAGGER_UI_POLICY, "/redoc": REDOC_POLICY}.get(path, SECURITY_HEADERS["Content-Security-Policy"])
    assert response.headers["content-security-policy"] == own
    for name, value in SECURITY_HEADERS.items():
        if name != "Content-Security-Policy":
            assert response.headers[name] == value, (path, name)
    # Every policy: scripts from this server only, never framed; only the docs relax images and styles.
    directives = dict(d.split(" ", 1) for d in response.headers["content-security-policy"].split("; "))
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "script-src" not in directives and "connect-src" not in directives


def test_pages_carry_no_inline_script_or_style(client):
    """The security policy allows no inline script or style: every page loads its own from files."""
    for path in ("/", "/docs", "/redoc"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert "<style" not in html and " style=" not in html and "javascript:" not in html, path
    assert "/static-docs/swagger-ui-bundle.js" in client.get("/docs").text


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", "date: Field required"),
        ("date=", "date: must be a day as YYYY-MM-DD"),
        ("date=2026-02-30", "calendar day"),
        ("date=0000-01-01", "YYYY-MM-DD"),
        ("date=9999-12-31", "out of range"),
        ("date=2026-11-20&region=", "region: '' is not one of EU, US, APAC"),
        ("date=2026-11-20&reason=", "reason: must be a reason's name"),
        ("date=2026-11-20&limit=", "limit"),
        ("date=2026-11-20&cursor=a%2Bb", "cursor: is not one this API issued"),
    ],
)
def test_malformed_parameters_are_400_before_any_database(client, query, says):
    response = client.get(f"/suspicious?{query}", headers=bearer("analyst-key-00000000000000000000000000000000"))
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "region=EU",
        "account_id=a",
        "date=2026-11-20",
        "transaction_id=t&date=2026-11-20",
        "transaction_id=t&account_id=a",
    ],
)
def test_transactions_takes_exactly_one_lookup(client, query):
    response = client.get(f"/transactions?{query}", headers=bearer("analyst-key-00000000000000000000000000000000"))
    assert response.status_code == 400
    assert response.json() == {"error": "give either transaction_id, or account_id and date"}


def test_a_key_over_its_limit_gets_429_with_retry_after_and_other_keys_do_not():
    app = create_app(Settings(api_keys=KEYS, api_key_requests_per_minute=3, api_address_requests_per_minute=100))
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/me", headers=bearer("analyst-key-00000000000000000000000000000000")).status_code == 200
        over = client.get("/me", headers=bearer("analyst-key-00000000000000000000000000000000"))
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) == 20  # one request per 20 s refills the bucket
        assert "this key" in over.json()["error"] and "3 a minute" in over.json()["error"]
        assert over.headers["x-content-type-options"] == "nosniff"
        assert client.get("/me", headers=bearer("other-key-00000000000000000000000000000000")).status_code == 200
        # An unknown key is not charged to anyone's bucket: the address's limit counts it.
        assert client.get("/me", headers=bearer("nobody")).status_code == 401


def test_an_address_over_its_limit_gets_429_on_every_path():
    app = create_app(Settings(api_keys=KEYS, api_address_requests_per_minute=4))
    with TestClient(app) as client:
        for path in ("/", "/openapi.json", "/me", "/static/app.js"):
            assert client.get(path, headers=bearer("analyst-key-00000000000000000000000000000000")).status_code == 200
        for path in ("/", "/me", "/metrics", "/health"):
            over = client.get(path, headers=bearer("other-key-00000000000000000000000000000000"))
            assert over.status_code == 429, path
            assert int(over.headers["retry-after"]) == 15
            assert "this address" in over.json()["error"]
            assert over.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]


# ---------------------------------------------------------------------------------- the rate limit alone
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_minutes_burst_then_the_refill_rate():
    clock = Clock()
    limit = RateLimit(6, "this key", clock)
    for _ in range(6):
        limit.take("a")
    with pytest.raises(Limited) as raised:
        limit.take("a")
    assert raised.value.retry_after == 10  # 6 a minute: a token every 10 s
    limit.take("b")  # another holder has its own bucket
    clock.now += 9.5
    with pytest.raises(Limited) as raised:
        limit.take("a")
    assert raised.value.retry_after == 1
    clock.now += 0.5
    limit.take("a")
    clock.now += 3600
    for _ in range(6):  # idle: the bucket is full again, never fuller
        limit.take("a")
    with pytest.raises(Limited):
        limit.take("a")


def test_the_buckets_stay_bounded(monkeypatch):
    monkeypatch.setattr(limits, "MAX_BUCKETS", 100)
    clock = Clock()
    limit = RateLimit(2, "this address", clock)
    limit.take("busy")
    limit.take("busy")
    for n in range(1000):
        limit.take(f"client-{n}")
        assert len(limit._buckets) <= 100
    # The emptied bucket of a recent holder is kept while it is among the most recently used.
    limit.take("busy-2")
    limit.take("busy-2")
    with pytest.raises(Limited):
        limit.take("busy-2")


def test_the_limits_are_thread_safe():
    limit = RateLimit(1000, "this key")
    passed = []

    def burst() -> None:
        for _ in range(300):
            try:
                limit.take("k")
                passed.append(1)
            except Limited:
                pass

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1000 <= len(passed) <= 1010  # the burst, plus what refilled meanwhile (1000 a minute)


# ---------------------------------------------------------------------------------- the shared reading
def test_concurrent_requests_share_one_reading_per_interval():
    clock = Clock()
    reads = []

    def read() -> int:
        reads.append(threading.current_thread().name)
        time.sleep(0.05)
        return len(reads)

    cached = Cached(5, read, "test", clock)

    async def scrape(n: int) -> list[int]:
        return list(await asyncio.gather(*(cached.get() for _ in range(n))))

    try:
        assert asyncio.run(scrape(50)) == [1] * 50  # 50 at once: one reading, all get it
        clock.now += 4.9
        assert asyncio.run(scrape(10)) == [1] * 10  # within the interval: no reading at all
        clock.now += 0.2
        assert asyncio.run(scrape(10)) == [2] * 10
        assert len(reads) == 2 and all(name.startswith("test") for name in reads)  # its own thread
    finally:
        cached.close()


def test_a_failed_reading_is_not_kept():
    answers = iter([RuntimeError("down"), "up"])

    def read() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cached = Cached(60, read, "test")

    async def twice() -> str:
        with pytest.raises(RuntimeError):
            await cached.get()
        return await cached.get()

    try:
        assert asyncio.run(twice()) == "up"
    finally:
        cached.close()


# ---------------------------------------------------------------------------------- /health's answer
def test_health_names_the_source_that_is_down_never_its_error(monkeypatch, caplog):
    from txmon.api import health
    from txmon.api.store import Store

    def ping(self) -> dict[str, bool]:
        return {"EU": True, "US,APAC": False}

    def admin(settings, *, user):
        raise RuntimeError('KafkaError{code=_TRANSPORT,val=-195,str="Failed to get metadata: 127.0.0.1:9"}')

    monkeypatch.setattr(Store, "ping", ping)
    monkeypatch.setattr(health.kafka_clients, "admin", admin)
    with caplog.at_level("WARNING", logger="txmon.api"):
        status, body = health.read(Store(SETTINGS))
    assert status == 503
    assert body == {
        "status": "unavailable",
        "databases": {"EU": "ok", "US,APAC": "unavailable"},
        "kafka": "unavailable",
    }
    assert "127.0.0.1:9" in caplog.text  # the reason, in the server's log only

    monkeypatch.setattr(Store, "ping", lambda self: {"EU,US,APAC": True})
    status, body = health.read(Store(SETTINGS))
    assert (status, body["status"], body["kafka"]) == (200, "ok", "unavailable")  # Kafka does not decide it
