"""Synthetic payments that look like a real payment platform's stream."""
# - accounts booked in the configured regions, paying in their region's currencies;
# - amounts log-normal in USD terms, with a tail of large payments above the suspicious threshold;
# - ~0.5% flagged by the upstream fraud screen;
# - a status mix with lifecycle updates (pending -> settled or failed, some settled -> reversed);
# - occasional producer-style redeliveries (the same bytes again);
# - malformed events of several kinds at ``bad_rate``.
#
# Event times follow a simulated clock (``start`` + i / tps); with a seed and a start the stream is reproducible byte
# for byte.

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


@dataclass(frozen=True)
class Generated:
    key: bytes | None
    value: bytes


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
        self._due: list[tuple[int, int, dict]] = []  # (due index, tiebreak, event) lifecycle updates
        self._n = 0

    # ------------------------------------------------------------------ pieces
    def _now(self) -> datetime:
        return self.start + timedelta(seconds=self._n / self.tps)

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

    def _emit(self, event: dict) -> Generated:
        out = Generated(event["account_id"].encode(), orjson.dumps(event))
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
        due = self._n + self.rng.randint(1, max(2, int(self.tps * 5)))  # within ~5 simulated seconds
        heapq.heappush(self._due, (due, self.rng.getrandbits(32), {**event, "status": status}))

    def _bad(self) -> Generated:
        kind = self.rng.choice(BAD_KINDS)
        if kind == "not_json":
            return Generated(None, b"{not json" + str(self._n).encode())
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
        return Generated(event["account_id"].encode(), orjson.dumps(event))

    # ------------------------------------------------------------------ stream
    def next(self) -> Generated:
        self._n += 1
        if self._due and self._due[0][0] <= self._n:
            _, _, update = heapq.heappop(self._due)
            update["event_time"] = _rfc3339(max(self._now(), datetime.fromisoformat(update["event_time"])))
            return self._emit(update)
        roll = self.rng.random()
        if roll < self.bad_rate:
            return self._bad()
        if roll < self.bad_rate + self.redelivery_rate and self._recent:
            return self.rng.choice(self._recent)
        return self._emit(self._new_transaction())

    def events(self, count: int) -> Iterator[Generated]:
        for _ in range(count):
            yield self.next()
