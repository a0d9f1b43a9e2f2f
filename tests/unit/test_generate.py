from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from contracts.transaction import EventValidator, InvalidEvent
from tests import aml_rules
from txmon.core import fx
from txmon.core.settings import Settings
from txmon.devtools.generate import STRUCTURING, VELOCITY, PaymentGenerator, pattern_of

START = datetime(2026, 11, 24, tzinfo=UTC)


def stream(n, **kw):
    gen = PaymentGenerator(Settings.from_env({}), tps=1000, seed=kw.pop("seed", 3), start=START, **kw)
    return list(gen.events(n))


def test_same_seed_same_bytes():
    assert [e.value for e in stream(2000)] == [e.value for e in stream(2000)]
    assert [e.value for e in stream(200)] != [e.value for e in stream(200, seed=4)]
    patterns = {"structuring_rate": 0.01, "velocity_rate": 0.002, "bad_rate": 0.01}
    first = stream(30_000, **patterns)
    assert sum(1 for e in first if b"-v0000" in e.value) > 100  # velocity bursts among them
    assert [(e.value, e.at, e.first) for e in first] == [(e.value, e.at, e.first) for e in stream(30_000, **patterns)]


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


# ------------------------------------------------------------------ the AML typologies' patterns
def test_pattern_of_names_a_pattern_account():
    assert pattern_of("acc-eu-s000012") == STRUCTURING
    assert pattern_of("acc-apac-v000003") == VELOCITY
    assert pattern_of("acc-us-0012345") is None
    assert pattern_of("acc-us-s") is None
    assert pattern_of("someone-else") is None


def judged(settings: Settings, events) -> tuple[Counter, list[aml_rules.Judged]]:
    """Checks a stream against the reference rules: structuring flags whole groups of structuring accounts (those
    with at least the minimum count of transactions so far), velocity the transactions past the N-th of each velocity
    burst, neither any ordinary transaction; ordinary amounts stay out of the band. Returns what it saw, and the
    transactions' latest states."""
    states = aml_rules.latest_states(settings, (e.value for e in events))
    by_structuring, by_velocity = aml_rules.structuring(settings, states), aml_rules.velocity(settings, states)
    over = aml_rules.over_threshold(settings, states)
    seen: Counter = Counter()
    bounds = {}  # by region: the band, and the band widened by half a percent of the threshold
    for region in settings.regions:
        limit = aml_rules.threshold(settings, region)
        floor, margin = settings.rule_parameters(region).structuring_min_ratio * limit, limit * Decimal("0.005")
        bounds[region] = (floor, limit, floor - margin, limit + margin)
    patterns = defaultdict(list)
    for t in states:
        if pattern_of(t.account_id) is not None:
            patterns[t.account_id].append(t)
            continue
        low, high = bounds[t.region][2:]
        assert not low <= t.amount_usd <= high, t
        assert t.transaction_id not in by_structuring and t.transaction_id not in by_velocity, t
        seen["ordinary transactions"] += 1
        seen["ordinary over the threshold"] += t.transaction_id in over
    for account, txs in patterns.items():
        region = txs[0].region
        rules = settings.rule_parameters(region)
        floor, limit = bounds[region][:2]
        ids = {t.transaction_id for t in txs}
        txs.sort(key=lambda t: (t.event_time, t.transaction_id))
        assert {t.status for t in txs} <= {"settled", "pending"}, account  # all settle (updates may be to come)
        assert {t.region for t in txs} == {region}
        if pattern_of(account) == STRUCTURING:
            assert len(txs) <= rules.structuring_min_transactions + 2
            assert all(floor <= t.amount_usd <= limit for t in txs), account
            spread = timedelta(hours=rules.structuring_window_hours) / 4 + timedelta(seconds=10)  # + updates, starts
            assert txs[-1].event_time - txs[0].event_time < spread
            whole = len(txs) >= rules.structuring_min_transactions
            assert ids & by_structuring == (ids if whole else set()), account
            assert not ids & by_velocity, account
            seen["structuring groups"] += 1
            seen["structuring groups flagged"] += whole
        else:
            n = rules.velocity_max_transactions
            assert len(txs) <= n + 5
            assert txs[-1].event_time - txs[0].event_time < timedelta(minutes=rules.velocity_window_minutes)
            assert ids & by_velocity == {t.transaction_id for t in txs[n:]}, account
            assert not ids & by_structuring, account
            seen["velocity bursts"] += 1
            seen["velocity bursts flagged"] += len(txs) > n
    return seen, states


def test_at_10000_tps_ordinary_traffic_fires_no_rule_and_the_patterns_fire_as_planned():
    settings = Settings.from_env({})
    gen = PaymentGenerator(settings, tps=10_000, seed=11, start=START, structuring_rate=0.002, velocity_rate=0.001)
    seen, _ = judged(settings, gen.until(10))  # 100,000 transactions
    assert seen["ordinary transactions"] > 98_000
    assert seen["ordinary over the threshold"] > 0.002 * seen["ordinary transactions"]  # the tail stays
    assert seen["structuring groups"] > 150 and seen["velocity bursts"] > 60  # most still under way at the end


def test_over_a_day_patterns_complete_and_ordinary_traffic_fires_no_rule():
    """A long stream at a low rate: groups and bursts complete, many velocity windows, the FX rates' change at
    midnight of the new year."""
    settings = Settings.from_env({})
    start = datetime(2025, 12, 31, 12, tzinfo=UTC)
    gen = PaymentGenerator(settings, tps=2, seed=12, start=start, structuring_rate=0.002, velocity_rate=0.0005)
    seen, _ = judged(settings, gen.until(86_400))
    assert seen["structuring groups flagged"] > 250
    assert seen["velocity bursts flagged"] > 50
    assert seen["ordinary over the threshold"] > 0.002 * seen["ordinary transactions"]


def test_the_generator_follows_the_settings_rule_parameters_and_thresholds():
    rules = {
        "*": {"velocity_max_transactions": 5, "velocity_window_minutes": 5},
        "EU": {"structuring_min_transactions": 4, "structuring_min_ratio": "0.8", "structuring_window_hours": 2},
        "US": {"velocity_max_transactions": 1, "velocity_window_minutes": 1},
    }
    env = {"TXMON_RULES": orjson.dumps(rules).decode(), "TXMON_SUSPICIOUS_THRESHOLD_USD_BY_REGION": '{"EU": "15000"}'}
    settings = Settings.from_env(env)
    gen = PaymentGenerator(settings, tps=60, seed=13, start=START, structuring_rate=0.002, velocity_rate=0.002)
    seen, states = judged(settings, gen.until(40 * 60))
    assert seen["structuring groups flagged"] > 20 and seen["velocity bursts flagged"] > 100
    eu = [t for t in states if t.region == "EU"]
    group_sizes = Counter(t.account_id for t in eu if pattern_of(t.account_id) == STRUCTURING)
    assert set(group_sizes.values()) <= {1, 2, 3, 4, 5, 6} and max(group_sizes.values()) == 6
    assert min(t.amount_usd for t in eu if pattern_of(t.account_id) == STRUCTURING) >= 12_000  # 0.8 x 15,000
    assert any(10_000 < t.amount_usd <= 12_000 for t in eu if pattern_of(t.account_id) is None)  # under EU's band
    bursts = Counter(t.account_id for t in states if pattern_of(t.account_id) == VELOCITY and t.region == "US")
    assert max(bursts.values()) == 6  # US: N = 1, bursts of 2 to 6
    over = aml_rules.over_threshold(settings, eu)
    assert over and all(t.amount_usd > 15_000 for t in eu if t.transaction_id in over)


@pytest.mark.parametrize(
    "kw",
    [
        {"structuring_rate": -0.1},
        {"velocity_rate": 1.5},
        {"bad_rate": 0.5, "structuring_rate": 0.3, "velocity_rate": 0.3},
    ],
)
def test_pattern_rates_are_checked(kw):
    with pytest.raises(ValueError, match="rate"):
        PaymentGenerator(Settings.from_env({}), tps=10, **kw)
