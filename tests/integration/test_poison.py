"""No message stops ingestion: whatever its bytes, it ends landed, a duplicate or quarantined.

Property-based (Hypothesis): arbitrary bytes, arbitrary JSON and near-valid events go through the
contract's validation and the real sink on a real PostgreSQL database; then a poison-pill test
sends such messages between normal traffic through the real Kafka and `txmon ingest`.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.transaction import CONTRACT_FIELDS, Transaction
from ingestion.sink import Message, WarehouseSink
from ingestion.validate import to_message, validator_for
from tests.integration.test_ingest import assert_every_offset_accounted_for, event
from txmon.core.settings import replace

NOW = datetime.now(UTC)
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def exact(text: bytes | str):
    """JSON with every number as an exact Decimal (how PostgreSQL's jsonb keeps numbers)."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


class SinkHarness:
    """The real sink on a real database, fed messages at increasing offsets of one partition."""

    def __init__(self, platform):
        self.platform = platform
        # "extra" is kept in raw_event (its numbers exactly as sent); any other extra field is left out of it.
        self.validator = validator_for(replace(platform.settings, extra_fields=("extra",)))
        self.sink = WarehouseSink(
            platform.settings.warehouse_dsn,
            platform.settings.topic,
            platform.settings.regions,
            home=True,
            worker="property",
        )
        self.sink.load_positions([0])
        self.offsets = itertools.count()

    def land(self, values: list[bytes | None]) -> list[Message]:
        messages = [to_message(self.validator, 0, next(self.offsets), b"k", v, NOW) for v in values]
        result = self.sink.land(messages)
        assert result.landed + result.duplicates + result.quarantined == len(messages)
        return messages

    def check(self, messages: list[Message]) -> None:
        """Each offset in exactly one table; landed text as sent; quarantined bytes verbatim."""
        lo, hi = messages[0].offset, messages[-1].offset
        query = self.platform.query
        landed = {
            o: r
            for o, *r in query(
                """SELECT "offset", transaction_id, account_id, counterparty_id, amount, currency, region, status,
                      fraud_flag, event_time, raw_event::text FROM staging.transactions
               WHERE "offset" BETWEEN %s AND %s""",
                (lo, hi),
            )
        }
        dupes = {
            o
            for (o,) in query(
                'SELECT "offset" FROM staging.duplicate_transactions WHERE "offset" BETWEEN %s AND %s', (lo, hi)
            )
        }
        rejected = {
            o: (bytes(v) if v is not None else None, reason)
            for o, v, reason in query(
                'SELECT "offset", raw_value, reason FROM staging.rejected_transactions'
                ' WHERE "offset" BETWEEN %s AND %s',
                (lo, hi),
            )
        }
        copies = {
            o: bytes(v)
            for o, v in query(
                'SELECT "offset", raw_value FROM staging.raw_events WHERE "offset" BETWEEN %s AND %s', (lo, hi)
            )
        }
        for m in messages:
            places = [m.offset in landed, m.offset in dupes, m.offset in rejected]
            assert places.count(True) == 1, (m.offset, m.value, places)
            if m.offset in rejected:
                value, reason = rejected[m.offset]
                assert value == m.value and reason
            elif m.offset in landed:
                e: Transaction = m.event
                row = landed[m.offset]
                assert row[:9] == [
                    e.transaction_id,
                    e.account_id,
                    e.counterparty_id,
                    e.amount,
                    e.currency,
                    e.region,
                    e.status,
                    e.fraud_flag,
                    e.event_time,
                ]
                sent = exact(m.value)
                kept = {k: v for k, v in sent.items() if k in CONTRACT_FIELDS or k == "extra"}
                assert exact(row[9]) == kept
                assert copies.get(m.offset) == (m.value if kept != sent else None)  # verbatim, when not all kept
            else:
                assert m.offset not in copies


@pytest.fixture
def harness(platform):
    h = SinkHarness(platform)
    yield h
    h.sink.close()


def _json_values():
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )


NASTY_LITERALS = [
    b"1e-2147483648",
    b"0e-1001",
    b"1e400",
    b"-0",
    b"9" * 400,
    b"1" + b"0" * 30,
    b"1E+308",
    b"1e-1000",
    b"[" * 70 + b"]" * 70,
    b"[" * 1000 + b"]" * 1000,
    b'"\\u0000"',
    b'"\\ud800"',
    b'"\\udc00x"',
    b'"\xed\xa0\x80"',
    b'"\xff"',
    b'"\x00"',
    b'"\\u200b"',
    b'"\xe2\x80\x8b"',
    b'""',
    b"null",
    b"true",
    b"{}",
    b'"' + b"x" * 70 + b'"',
    b'"2026-11-24T10:00:00+23:59"',
    b'"9999-12-31T23:30:00-01:00"',
    b'"0001-01-01T00:30:00+01:00"',
    b'"2099-01-01T00:00:00Z"',
    b'"2024-12-31T23:59:59Z"',
    b'"2026-11-24t10:00:00z"',
    b'"2026-02-29T10:00:00Z"',
    b'"10000.0001"',
    b'"0.00001"',
    b'"999999999999.9999"',
    b"999999999999.9999",
    b"1e-5",
    b"1E2",
    b'"USD"',
]
FIELDS = [
    "transaction_id",
    "account_id",
    "counterparty_id",
    "amount",
    "currency",
    "region",
    "status",
    "fraud_flag",
    "event_time",
    "extra",
]


@st.composite
def near_valid_events(draw) -> bytes:
    """A valid event with some fields replaced by raw JSON literals PostgreSQL or Python may choke on."""
    moment = NOW - timedelta(seconds=draw(st.integers(0, 86_400 * 300)))
    zone = timezone(timedelta(minutes=draw(st.sampled_from([0, -300, 840, -720, 1439, -1439]))))
    fields = event(
        draw(st.text(min_size=1, max_size=64)),
        draw(st.sampled_from(["pending", "settled", "failed", "reversed"])),
        account_id=draw(st.text(min_size=1, max_size=64)),
        amount=str(draw(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("999999999999.9999"), places=4))),
        event_time=moment.astimezone(zone).isoformat(),
        fraud_flag=draw(st.booleans()),
    )
    ascii_only = draw(st.booleans())
    parts = {k: json.dumps(v, ensure_ascii=ascii_only).encode() for k, v in fields.items()}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        parts[field] = draw(st.sampled_from(NASTY_LITERALS) | _json_values().map(lambda v: json.dumps(v).encode()))
    return b"{" + b", ".join(json.dumps(k).encode() + b": " + v for k, v in parts.items()) + b"}"


@PROPERTY_SETTINGS
@given(values=st.lists(st.none() | st.binary(max_size=200), min_size=1, max_size=8))
def test_arbitrary_bytes_are_quarantined_or_landed_never_raised(harness, values):
    harness.check(harness.land(values))


@PROPERTY_SETTINGS
@given(values=st.lists(_json_values(), min_size=1, max_size=8), ascii_only=st.booleans())
def test_arbitrary_json_is_accounted_for(harness, values, ascii_only):
    raw = [json.dumps(v, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass") for v in values]
    harness.check(harness.land(raw))


@PROPERTY_SETTINGS
@given(values=st.lists(near_valid_events(), min_size=1, max_size=8))
def test_near_valid_events_land_exactly_or_are_quarantined_with_a_reason(harness, values):
    harness.check(harness.land(values))


def test_events_postgresql_refuses_are_found_and_quarantined_the_batch_goes_on(harness):
    """What gets past the validator but not PostgreSQL (here made by hand) is bisected out and quarantined."""
    good = [json.dumps(event(f"ok-{i}", event_time=NOW.isoformat())).encode() for i in range(9)]
    messages = [to_message(harness.validator, 0, next(harness.offsets), None, v, NOW) for v in good]
    assert all(m.event is not None for m in messages)
    messages[3].value = b'{"n": 1e-2147483648}'  # jsonb refuses this number
    messages[6].event.amount = Decimal("1e20")  # numeric(16,4) overflows
    result = harness.sink.land(messages)
    assert (result.landed, result.quarantined) == (7, 2)
    reasons = dict(harness.platform.query('SELECT "offset", reason FROM staging.rejected_transactions'))
    assert set(reasons) == {messages[3].offset, messages[6].offset}
    assert all(r.startswith("PostgreSQL cannot store it: ") for r in reasons.values())
    assert "numeric" in reasons[messages[6].offset]


def test_poison_pills_between_normal_traffic(platform, tmp_path):
    """Through the real Kafka and `txmon ingest --until-idle`: it exits 0, every offset is accounted for."""
    today = NOW.isoformat()
    pills = [
        json.dumps(event("pp-1", event_time="9999-12-31T23:30:00-01:00")),
        json.dumps(event("pp-2", event_time="0001-01-01T00:30:00+01:00")),
        json.dumps(event("pp-3", extra="@")).replace('"@"', "[" * 1000 + "]" * 1000),
        json.dumps(event("pp-4", extra="@")).replace('"@"', "1e-2147483648"),
        json.dumps(event("pp-5", event_time="2099-01-01T00:00:00Z")),
        json.dumps(event("pp-6", event_time="2024-12-31T23:59:59Z")),
        '{"transaction_id": "pp-7", "x": "\\ud800"}',
        "\x01\x02 not json",
    ]
    normal = [json.dumps(event(f"ok-{i}", event_time=today)) for i in range(30)]
    lines = [line for pair in itertools.zip_longest(normal[::4], pills) for line in pair if line] + normal
    lines = list(dict.fromkeys(lines))  # each once
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join(lines) + "\n")
    platform.txmon("produce", str(source))
    report = json.loads(platform.txmon("ingest", "--until-idle").stdout)
    assert (report["landed"], report["quarantined"]) == (30, len(pills)), report
    assert {r for (r,) in platform.query("SELECT transaction_id FROM staging.transactions")} == {
        f"ok-{i}" for i in range(30)
    }
    reasons = [r for (r,) in platform.query("SELECT reason FROM staging.rejected_transactions")]
    assert len(reasons) == len(pills) and all(reasons)
    assert_every_offset_accounted_for(platform)
