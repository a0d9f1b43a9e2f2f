"""Synthetic payments that look like a real payment platform's stream."""
# - accounts booked in the configured regions, paying in their region's currencies;
# - amounts log-normal in USD terms, with a tail of large payments above the suspicious threshold;
# - ~0.5% flagged by the upstream fraud screen;
# - a status mix with lifecycle updates (pending -> settled or failed, some settled -> reversed);
# - occasional producer-style redeliveries (the same bytes again);
# - malformed events of several kinds at ``bad_rate``.
#
# ``tps`` is transactions per second: the stream's clock starts a transaction (its first event, or a malformed event in
# its place) every 1 / tps seconds; each lifecycle update follows its transaction within ~5 simulated seconds, and a
# redelivery repeats a recent event at the moment it follows, so events per second are about 1.6 tps. Every event
# carries its moment on that clock (``at``, seconds since ``start``; event times are ``start`` + at) and whether it is
# a transaction's first event. With a seed and a start the stream is reproducible byte for byte.

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import orjson

from contracts import load_schema
from txmon.core import fx
from txmon.core.settings import Settings

REGION_CURRENCIES = {
    "EU": ("EUR", "EUR", "EUR", "GBP", "CHF"),
    "US": ("USD", "USD", "USD", "USD", "CAD"),
    "APAC": ("SGD", "HKD", "AUD", "JPY", "INR"),
}
ZERO_DECIMAL_CURRENCIES = {"JPY"}
BAD_KINDS = (
    "not_json",
    "missing_field",
    "negative_amount",
    "unknown_currency",
    "unknown_region",
    "bad_timestamp",
    "too_many_decimals",
)
LIFECYCLE_SECONDS = 5.0  # a transaction's lifecycle update follows it within this time


@dataclass(frozen=True)
class Generated:
    key: bytes | None
    value: bytes
    at: float = 0.0  # seconds since the stream's start, on its clock
    first: bool = False  # a transaction's first event (or the malformed event in its place)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PaymentGenerator:
    def __init__(
        self,
        settings: Settings,
        *,
        tps: float,
        seed: int | None = None,
        bad_rate: float = 0.0,
        start: datetime | None = None,
        accounts: int = 20_000,
        redelivery_rate: float = 0.002,
        fraud_rate: float = 0.005,
    ):
        if tps <= 0:
            raise ValueError("tps must be positive")
        self.rng = random.Random(seed)
        self.tps = tps
        self.bad_rate = bad_rate
        self.redelivery_rate = redelivery_rate
        self.fraud_rate = fraud_rate
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        schema = load_schema(settings.regions, settings.currencies)
        self.statuses = schema["properties"]["status"]["enum"]
        allowed = set(schema["properties"]["currency"]["enum"])
        self.accounts = []
        for i in range(accounts):
            region = settings.regions[i % len(settings.regions)]
            choices = [c for c in REGION_CURRENCIES.get(region, ()) if c in allowed] or sorted(allowed)
            self.accounts.append((f"acc-{region.lower()}-{i:06d}", region, self.rng.choice(choices)))
        self.merchants = [f"mch-{i:05d}" for i in range(2_000)]
        self._recent: deque[Generated] = deque(maxlen=1_000)
        self._due: list[tuple[float, int, dict]] = []  # (due moment, tiebreak, event) lifecycle updates
        self._transactions = 0  # started so far: the next one starts at _transactions / tps
        self._at = 0.0  # the current event's moment
        self._redelivery: Generated | None = None  # follows the current event
        self._held: Generated | None = None  # taken from the stream by until() but not yet given

    # ------------------------------------------------------------------ pieces
    def _now(self) -> datetime:
        return self.start + timedelta(seconds=self._at)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _amount(self, currency: str, on) -> str:
        if self.rng.random() < 0.02:  # corporate payments: the heavy tail
            usd = math.exp(self.rng.gauss(math.log(3_000), 1.2))
        else:
            usd = math.exp(self.rng.gauss(math.log(45), 1.3))
        usd = min(max(usd, 0.5), 5_000_000)
        local = Decimal(repr(usd)) / fx.usd_per_unit(currency, on)
        places = Decimal("1") if currency in ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
        return str(max(local.quantize(places, ROUND_HALF_UP), places))

    def _emit(self, event: dict, *, first: bool) -> Generated:
        out = Generated(event["account_id"].encode(), orjson.dumps(event), self._at, first)
        self._recent.append(out)
        return out

    def _new_transaction(self) -> dict:
        account, region, currency = self.rng.choice(self.accounts)
        now = self._now()
        roll = self.rng.random()
        status = "pending" if roll < 0.60 else "settled" if roll < 0.95 else "failed"
        event = {
            "transaction_id": self._uuid(),
            "account_id": account,
            "counterparty_id": self.rng.choice(self.merchants),
            "amount": self._amount(currency, now.date()),
            "currency": currency,
            "region": region,
            "status": status,
            "fraud_flag": self.rng.random() < self.fraud_rate,
            "event_time": _rfc3339(now),
            "channel": self.rng.choice(("card", "card", "card", "transfer", "wallet")),
        }
        if status == "pending":
            final = "settled" if self.rng.random() < 0.92 else "failed"
            self._schedule(event, final)
        elif status == "settled" and self.rng.random() < 0.01:
            self._schedule(event, "reversed")
        return event

    def _schedule(self, event: dict, status: str) -> None:
        due = self._at + self.rng.uniform(0.001, LIFECYCLE_SECONDS)
        heapq.heappush(self._due, (due, self.rng.getrandbits(32), {**event, "status": status}))

    def _bad(self) -> Generated:
        kind = self.rng.choice(BAD_KINDS)
        if kind == "not_json":
            return Generated(None, b"{not json" + str(self._transactions).encode(), self._at, True)
        event = self._new_transaction()
        self._due = [d for d in self._due if d[2]["transaction_id"] != event["transaction_id"]]
        heapq.heapify(self._due)
        if kind == "missing_field":
            del event[self.rng.choice(("transaction_id", "amount", "currency", "event_time"))]
        elif kind == "negative_amount":
            event["amount"] = "-" + event["amount"]
        elif kind == "unknown_currency":
            event["currency"] = "XXX"
        elif kind == "unknown_region":
            event["region"] = "MARS"
        elif kind == "bad_timestamp":
            event["event_time"] = event["event_time"].replace("T", " at ").removesuffix("Z")
        elif kind == "too_many_decimals":
            event["amount"] = event["amount"].split(".")[0] + ".123456"
        return Generated(event["account_id"].encode(), orjson.dumps(event), self._at, True)

    # ------------------------------------------------------------------ stream
    def next(self) -> Generated:
        """The next event in time order: a redelivery, a lifecycle update now due, or the next transaction."""
        if self._held is not None:
            out, self._held = self._held, None
            return out
        if self._redelivery is not None:
            out, self._redelivery = self._redelivery, None
            return out
        starts = self._transactions / self.tps
        if self._due and self._due[0][0] <= starts:
            due, _, update = heapq.heappop(self._due)
            self._at = max(self._at, due)
            update["event_time"] = _rfc3339(max(self._now(), datetime.fromisoformat(update["event_time"])))
            return self._emit(update, first=False)
        self._at = starts
        self._transactions += 1
        roll = self.rng.random()
        out = self._bad() if roll < self.bad_rate else self._emit(self._new_transaction(), first=True)
        if self.rng.random() < self.redelivery_rate and self._recent:
            again = self.rng.choice(self._recent)
            self._redelivery = Generated(again.key, again.value, self._at, False)
        return out

    def events(self, count: int) -> Iterator[Generated]:
        """The next ``count`` events."""
        for _ in range(count):
            yield self.next()

    def until(self, moment: float) -> Iterator[Generated]:
        """The next events up to ``moment`` on the stream's clock (excluded): from a new generator, ``moment`` x tps
        transactions and the updates and redeliveries that fall in that time."""
        while True:
            event = self.next()
            if event.at >= moment:
                self._held = event
                return
            yield event
