"""The AML typologies (docs/rules.md) in plain Python, to check a stream of events against: each transaction judged by
its latest state, amounts in USD at the FX rate of its event's UTC day rounded to 4 places, parameters by region."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import orjson

from txmon.core import fx
from txmon.core.settings import RuleParameters, Settings

CENTS = Decimal("0.0001")


@dataclass(frozen=True)
class Judged:
    transaction_id: str
    account_id: str
    region: str
    event_time: datetime
    amount_usd: Decimal
    status: str


def latest_states(settings: Settings, values: Iterable[bytes]) -> list[Judged]:
    """Each transaction's latest state: its event with the latest event_time (of equal ones, the later). A quick
    reading: events that are not JSON objects with the fields, a positive amount, a known region and currency and
    an RFC 3339 time are left out; the generator's other malformed events are not told apart."""
    latest: dict[str, tuple[datetime, dict]] = {}
    for value in values:
        try:
            event = orjson.loads(value)
            key = event["transaction_id"]
            moment = datetime.fromisoformat(event["event_time"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        held = latest.get(key)
        if held is None or moment >= held[0]:
            latest[key] = (moment, event)
    rates: dict = {}
    out = []
    for key, (moment, e) in latest.items():
        try:
            amount = Decimal(e["amount"])
            fields = (e["account_id"], e["region"], e["currency"], e["status"])
        except (KeyError, TypeError, InvalidOperation):
            continue
        if amount <= 0 or moment.tzinfo is None or e["region"] not in settings.regions:
            continue
        day = moment.astimezone(UTC).date()
        rate = rates.get((e["currency"], day))
        if rate is None:
            if e["currency"] not in settings.currencies:
                continue
            rate = rates[e["currency"], day] = fx.usd_per_unit(e["currency"], day)
        usd = (amount * rate).quantize(CENTS, ROUND_HALF_UP)
        out.append(Judged(key, fields[0], fields[1], moment, usd, fields[3]))
    return out


def threshold(settings: Settings, region: str) -> Decimal:
    return settings.suspicious_threshold_usd_by_region.get(region, settings.suspicious_threshold_usd)


def _rules(settings: Settings) -> dict[str, RuleParameters]:
    return {region: settings.rule_parameters(region) for region in settings.regions}


def _by_account(transactions: Iterable[Judged], least: int = 1) -> dict[tuple[str, str], list[Judged]]:
    """Each account's transactions in each region in order of event_time, then transaction_id; only the accounts
    with at least ``least`` of them."""
    groups = defaultdict(list)
    for t in transactions:
        groups[t.account_id, t.region].append(t)
    out = {}
    for key, group in groups.items():
        if len(group) >= least:
            group.sort(key=lambda t: (t.event_time, t.transaction_id))
            out[key] = group
    return out


def structuring(settings: Settings, transactions: Iterable[Judged]) -> set[str]:
    """Transactions of a group of one account's in one region spanning less than the window, each in the band
    [min ratio x threshold, threshold], at least the minimum count of them, together over the threshold."""
    flagged, parameters = set(), _rules(settings)
    bands = {
        r: (p.structuring_min_ratio * threshold(settings, r), threshold(settings, r)) for r, p in parameters.items()
    }
    candidates = [t for t in transactions if bands[t.region][0] <= t.amount_usd <= bands[t.region][1]]
    for (_, region), band in _by_account(candidates).items():
        rules, limit = parameters[region], threshold(settings, region)
        window = timedelta(hours=rules.structuring_window_hours)
        end, total = 0, Decimal(0)
        for start, first in enumerate(band):  # the largest group from each transaction on
            while end < len(band) and band[end].event_time - first.event_time < window:
                total += band[end].amount_usd
                end += 1
            if end - start >= rules.structuring_min_transactions and total > limit:
                flagged.update(t.transaction_id for t in band[start:end])
            total -= first.amount_usd
    return flagged


def velocity(settings: Settings, transactions: Iterable[Judged]) -> set[str]:
    """Transactions past the N-th of one account's in one region within a span shorter than the window (in order of
    event_time, then transaction_id)."""
    flagged, parameters = set(), _rules(settings)
    least = min(p.velocity_max_transactions for p in parameters.values()) + 1
    for (_, region), group in _by_account(transactions, least).items():
        rules = parameters[region]
        window = timedelta(minutes=rules.velocity_window_minutes)
        first = 0
        for i, t in enumerate(group):
            while t.event_time - group[first].event_time >= window:
                first += 1
            if i - first >= rules.velocity_max_transactions:
                flagged.add(t.transaction_id)
    return flagged


def over_threshold(settings: Settings, transactions: Iterable[Judged]) -> set[str]:
    return {t.transaction_id for t in transactions if t.amount_usd > threshold(settings, t.region)}
