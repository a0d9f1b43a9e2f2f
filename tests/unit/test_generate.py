from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from contracts.transaction import EventValidator, InvalidEvent
from txmon.core import fx
from txmon.core.settings import Settings
from txmon.devtools.generate import PaymentGenerator

START = datetime(2026, 11, 24, tzinfo=UTC)


def stream(n, **kw):
    gen = PaymentGenerator(Settings.from_env({}), tps=1000, seed=kw.pop("seed", 3), start=START, **kw)
    return list(gen.events(n))


def test_same_seed_same_bytes():
    assert [e.value for e in stream(2000)] == [e.value for e in stream(2000)]
    assert [e.value for e in stream(200)] != [e.value for e in stream(200, seed=4)]


def test_stream_is_realistic_and_valid():
    settings = Settings.from_env({})
    validator = EventValidator(settings.regions, settings.currencies)
    events = stream(60_000)
    parsed = [validator.parse(e.value) for e in events]  # no bad events asked for: all valid
    assert {t.region for t in parsed} == {"EU", "US", "APAC"}
    assert all(e.key == t.account_id.encode() for e, t in zip(events, parsed, strict=True))
    ids = {}
    for t in parsed:
        ids.setdefault(t.transaction_id, set()).add(t.status)
    assert sum(1 for s in ids.values() if {"pending", "settled"} <= s) > 1000  # lifecycle updates
    assert len(events) - len({e.value for e in events}) > 20  # producer-style redeliveries
    flagged = sum(t.fraud_flag for t in parsed) / len(parsed)
    assert 0.002 < flagged < 0.01
    big = sum(1 for t in parsed if t.amount * fx.usd_per_unit(t.currency, t.event_date) > Decimal(10_000))
    assert 0.001 < big / len(parsed) < 0.02  # a real tail above the threshold
    times = [t.event_time for t in parsed]
    assert times[0] >= START and times[-1] < START.replace(minute=2)


def test_bad_rate_gives_invalid_events_of_several_kinds():
    settings = Settings.from_env({})
    validator = EventValidator(settings.regions, settings.currencies)
    reasons = set()
    for e in stream(5000, bad_rate=0.2):
        try:
            validator.parse(e.value)
        except InvalidEvent as exc:
            reasons.add(exc.reason.split(" ")[0])
    assert len(reasons) >= 5, reasons


def test_amounts_are_decimal_strings():
    for e in stream(500):
        amount = orjson.loads(e.value)["amount"]
        assert isinstance(amount, str) and Decimal(amount) > 0


def test_tps_paces_transactions_with_their_lifecycle_updates_following():
    rate, seconds = 500, 20
    gen = PaymentGenerator(Settings.from_env({}), tps=rate, seed=5, start=START)
    events = list(gen.until(seconds))
    firsts = [e for e in events if e.first]
    ids = {orjson.loads(e.value)["transaction_id"] for e in firsts}
    assert len(firsts) == len(ids) == rate * seconds  # one first event per transaction, R x N of them
    assert all(e.at < seconds for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)  # in time order
    per_second = [sum(1 for e in firsts if s <= e.at < s + 1) for s in range(seconds)]
    assert set(per_second) == {rate}  # evenly paced
    ratio = len(events) / len(firsts)
    assert 1.5 < ratio < 1.65  # 60% pending then settled or failed, a few reversals and redeliveries
    later = [orjson.loads(e.value) for e in events if not e.first]
    first_status = {orjson.loads(e.value)["transaction_id"]: orjson.loads(e.value)["status"] for e in firsts}
    updates = [e for e in later if e["status"] != first_status.get(e["transaction_id"])]
    assert len(updates) > 0.5 * len(firsts)
    assert all(datetime.fromisoformat(e["event_time"]) >= START for e in later)


def test_until_continues_where_it_stopped():
    whole = PaymentGenerator(Settings.from_env({}), tps=200, seed=9, start=START)
    parts = PaymentGenerator(Settings.from_env({}), tps=200, seed=9, start=START)
    assert [e.value for e in whole.until(6)] == [e.value for e in parts.until(2)] + [e.value for e in parts.until(6)]
