"""Synthetic payments that look like a real payment platform's stream."""
# - accounts booked in the configured regions, paying in their region's currencies;
# - amounts log-normal in USD terms, with a tail of large payments above the suspicious threshold;
# - ~0.5% flagged by the upstream fraud screen;
# - a status mix with lifecycle updates (pending -> settled or failed, some settled -> reversed);
# - occasional producer-style redeliveries (the same bytes again);
# - malformed events of several kinds at ``bad_rate``;
# - the AML typologies' patterns (docs/rules.md), each on an account of its own, at ``structuring_rate`` and
#   ``velocity_rate``.
#
# ``tps`` is transactions per second: the stream's clock starts a transaction (its first event, or a malformed event in
# its place) every 1 / tps seconds; each lifecycle update follows its transaction within ~5 simulated seconds, and a
# redelivery repeats a recent event at the moment it follows, so events per second are about 1.6 tps. Every event
# carries its moment on that clock (``at``, seconds since ``start``; event times are ``start`` + at) and whether it is
# a transaction's first event. With a seed and a start the stream is reproducible byte for byte.
#
# Patterns. Each started transaction is, with probability ``structuring_rate`` (``velocity_rate``), instead the first
# of a pattern; the pattern's later transactions take the first starts at or after their moments, so the stream still
# starts exactly tps transactions per second. A pattern's account is its own, its id ``acc-<region>-s<n>`` (structuring)
# or ``acc-<region>-v<n>`` (velocity); ``pattern_of(account_id)`` names the pattern of an id. By the region's rule
# parameters (``Settings.rule_parameters``) and suspicious threshold:
# - structuring: ``structuring_min_transactions`` to that + 2 transactions within two hours (a quarter of the
#   structuring window when that is shorter), each worth in USD (as the database converts it) between the band's
#   floor (``structuring_min_ratio`` x the threshold) and the threshold, and more than threshold /
#   ``structuring_min_transactions``, 1% of the threshold inside those bounds (a quarter of the room between them when
#   that is less; a region where that margin would be under a cent gets no structuring groups), so any
#   ``structuring_min_transactions`` of them exceed the threshold together. A group larger than
#   ``velocity_max_transactions`` keeps its transactions a velocity window apart where its spread allows (and fires
#   velocity too where it cannot);
# - velocity: ``velocity_max_transactions`` + 1 to + 5 transactions within two minutes (half the velocity window when
#   that is shorter), ordinary amounts.
# A pattern's transactions all settle (settled, or pending then settled). A pattern is made only where its transactions
# are at most a quarter of the starts of its window (at 1 tx/s, velocity bursts of up to 900 in the default window),
# so that taking starts cannot stretch it out of the window.
#
# Ordinary traffic fires neither rule in a stream, at any rate, by construction:
# - an ordinary amount is never within 1% of the threshold of the band [min ratio x threshold, threshold] in USD
#   (redrawn from the same distribution when it would be), at the FX rate of its UTC day and, within seconds of
#   midnight, of the next day too (its lifecycle updates may fall there); the tail above the threshold stays;
# - an ordinary account makes at most ``velocity_max_transactions`` (at most 15) transactions in any two consecutive
#   spans of the velocity window + 1 minute on the stream's clock, so in any velocity window however its lifecycle
#   updates move its transactions' times: the generator counts each account's transactions in the current and the
#   previous span and picks another account for one that would go over. The region's accounts are numbered
#   (``acc-<region>-<n>``, the currency derived from the number), as many as the rate needs for about one
#   transaction per account per span (at least ``accounts`` in all; at most 20M a region where fewer can take the
#   rate): at 10,000 tx/s and the default window, 36.6M accounts, counted in a byte each.

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import orjson

from contracts import load_schema
from txmon.core import fx
from txmon.core.settings import RuleParameters, Settings

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

STRUCTURING = "structuring"
VELOCITY = "velocity"
PATTERNS = {"s": STRUCTURING, "v": VELOCITY}  # an account id's number starts with the letter of its pattern
STRUCTURING_RATE = 1 / 20_000  # the defaults: the share of started transactions that start a pattern instead
VELOCITY_RATE = 1 / 50_000
STRUCTURING_SPREAD = 2 * 3600.0  # seconds a structuring group spreads over, at most a quarter of the window
VELOCITY_SPREAD = 120.0  # seconds a velocity burst spreads over, at most half the window
AMOUNT_MARGIN = Decimal("0.01")  # of the threshold: ordinary amounts stay this far outside the band, patterns' inside
AMOUNT_DRAWS = 20  # an ordinary amount in the band is drawn again, at most this many times (then set above the band)
SPAN_SLACK = 60.0  # an account's transactions are counted per span of the velocity window + this many seconds
MAX_COUNT = 15  # an ordinary account's transactions per two spans are counted in half a byte
REGION_ACCOUNTS = 20_000_000  # ordinary accounts a region has at most, unless fewer could not take the rate
ONE_DAY = timedelta(days=1)
NEAR_MIDNIGHT = LIFECYCLE_SECONDS + 1  # seconds before midnight after which an update may fall on the next day
USD_PLACES = Decimal("0.0001")  # amounts in USD as the database rounds them
_SHIFT = bytes((b & 15) << 4 for b in range(256))  # the current span's count becomes the previous span's


def pattern_of(account_id: str) -> str | None:
    """The pattern an account id belongs to: "structuring", "velocity", or None for an ordinary account."""
    number = account_id.rpartition("-")[2]
    return PATTERNS.get(number[:1]) if number[1:].isdigit() else None


@dataclass(frozen=True)
class Generated:
    key: bytes | None
    value: bytes
    at: float = 0.0  # seconds since the stream's start, on its clock
    first: bool = False  # a transaction's first event (or the malformed event in its place)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Region:
    """A region's ordinary accounts (with their transactions counted per span) and its amounts' bounds in USD."""

    def __init__(
        self, name: str, currencies: tuple[str, ...], threshold: Decimal, rules: RuleParameters, tps: float, least: int
    ):
        self.name = name
        self.prefix = f"acc-{name.lower()}-"
        self.currencies = currencies
        self.rules = rules
        self.threshold = threshold
        self.floor = rules.structuring_min_ratio * threshold  # the structuring band is [floor, threshold]
        margin = max(threshold * AMOUNT_MARGIN, Decimal("0.01"))
        self.avoid = (float(self.floor - margin), float(threshold + margin))  # no ordinary amount in here
        # A structuring group's amounts: in the band, and any min_transactions of them together over the threshold.
        lower = max(self.floor, threshold / rules.structuring_min_transactions)
        inside = min(threshold * AMOUNT_MARGIN, (threshold - lower) / 4)
        self.band = (float(lower + inside), float(threshold - inside)) if inside >= Decimal("0.01") else None
        self.span = rules.velocity_window_minutes * 60 + SPAN_SLACK
        self.cap = min(rules.velocity_max_transactions, MAX_COUNT)
        per_span = tps * self.span  # expected transactions per span
        # About one transaction per account and span (a quarter of the cap when lower); above REGION_ACCOUNTS, as
        # many as keep a quarter of the cap per span, so that an account is seldom full and drawn again.
        wanted = math.ceil(per_span / min(self.cap / 4, 1.0))
        self.size = max(least, min(wanted, max(REGION_ACCOUNTS, math.ceil(per_span * 4 / self.cap))))
        self.counts = bytearray(self.size)  # per account: the previous span's count x 16 + the current span's
        self.current = 0  # the current span

    def roll(self, span: int) -> None:
        self.counts = self.counts.translate(_SHIFT) if span == self.current + 1 else bytearray(self.size)
        self.current = span

    def currency(self, number: int) -> str:
        return self.currencies[(number * 2654435761 >> 16) % len(self.currencies)]


class PaymentGenerator:
    """The stream of ``settings``' regions, currencies, rule parameters and thresholds: ``tps`` transactions a second
    from ``start`` (default: now); ``accounts``: the least number of ordinary accounts. The rates are shares of the
    started transactions: malformed (``bad_rate``), starting a structuring group or a velocity burst (with
    ``bad_rate``, together at most 1), followed by a redelivery, flagged by the upstream fraud screen."""

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
        structuring_rate: float = STRUCTURING_RATE,
        velocity_rate: float = VELOCITY_RATE,
    ):
        if tps <= 0:
            raise ValueError("tps must be positive")
        rates = {"bad_rate": bad_rate, "structuring_rate": structuring_rate, "velocity_rate": velocity_rate}
        for name, rate in rates.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if sum(rates.values()) > 1:
            raise ValueError("bad_rate, structuring_rate and velocity_rate together must not exceed 1")
        self.rng = random.Random(seed)
        self.tps = tps
        self.bad_rate = bad_rate
        self.structuring_rate = structuring_rate
        self.velocity_rate = velocity_rate
        self._structuring_below = bad_rate + structuring_rate  # a start's roll below this starts a structuring group
        self._velocity_below = self._structuring_below + velocity_rate
        self.redelivery_rate = redelivery_rate
        self.fraud_rate = fraud_rate
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        midnight = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        self._day_offset = (self.start - midnight).total_seconds()
        schema = load_schema(settings.regions, settings.currencies)
        self.statuses = schema["properties"]["status"]["enum"]
        allowed = set(schema["properties"]["currency"]["enum"])
        share = tps / len(settings.regions)
        least = math.ceil(accounts / len(settings.regions))
        self.regions = []
        for region in settings.regions:
            choices = tuple(c for c in REGION_CURRENCIES.get(region, ()) if c in allowed) or tuple(sorted(allowed))
            threshold = settings.suspicious_threshold_usd_by_region.get(region, settings.suspicious_threshold_usd)
            self.regions.append(_Region(region, choices, threshold, settings.rule_parameters(region), share, least))
        self.merchants = [f"mch-{i:05d}" for i in range(2_000)]
        self._rates: dict[tuple[str, date], Decimal] = {}
        self._recent: deque[Generated] = deque(maxlen=1_000)
        self._due: list[tuple[float, int, dict]] = []  # (due moment, tiebreak, event) lifecycle updates
        self._patterns: list[tuple[float, int, tuple]] = []  # (due moment, order, planned) patterns' later transactions
        self._started = {letter: 0 for letter in PATTERNS}  # patterns started, by letter: their accounts' numbers
        self._planned = 0
        self._transactions = 0  # started so far: the next one starts at _transactions / tps
        self._at = 0.0  # the current event's moment
        self._redelivery: Generated | None = None  # follows the current event
        self._held: Generated | None = None  # taken from the stream by until() but not yet given

    # ------------------------------------------------------------------ pieces
    def _now(self) -> datetime:
        return self.start + timedelta(seconds=self._at)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _rate(self, currency: str, day: date) -> Decimal:
        rate = self._rates.get((currency, day))
        if rate is None:
            rate = self._rates[currency, day] = fx.usd_per_unit(currency, day)
        return rate

    def _rates_of(self, currency: str, now: datetime) -> tuple[Decimal, ...]:
        """The FX rates a transaction starting now may be converted at: its day's, and near midnight the next day's
        (where its lifecycle updates may fall)."""
        day = now.date()
        if (self._day_offset + self._at) % 86_400 > 86_400 - NEAR_MIDNIGHT:
            return self._rate(currency, day), self._rate(currency, day + ONE_DAY)
        return (self._rate(currency, day),)

    def _usd(self) -> float:
        if self.rng.random() < 0.02:  # corporate payments: the heavy tail
            usd = math.exp(self.rng.gauss(math.log(3_000), 1.2))
        else:
            usd = math.exp(self.rng.gauss(math.log(45), 1.3))
        return min(max(usd, 0.5), 5_000_000)

    @staticmethod
    def _local(usd: float, currency: str, rate: Decimal) -> Decimal:
        local = Decimal(repr(usd)) / rate
        places = Decimal("1") if currency in ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
        return max(local.quantize(places, ROUND_HALF_UP), places)

    def _amount(self, region: _Region, currency: str, now: datetime) -> str:
        """An ordinary amount: log-normal in USD, never in or near the region's structuring band."""
        rates = self._rates_of(currency, now)
        low, high = region.avoid
        if len(rates) > 1:
            change = float(rates[1] / rates[0])
            low, high = low / max(change, 1.0), high / min(change, 1.0)
        for _ in range(AMOUNT_DRAWS):
            usd = self._usd()
            if not low <= usd <= high:
                break
        else:
            usd = high * 1.05
        return str(self._local(usd, currency, rates[0]))

    def _band_amount(self, region: _Region, currency: str, now: datetime) -> str:
        """A structuring group's amount: inside the band by the margin, checked as the database converts it."""
        assert region.band is not None
        rates = self._rates_of(currency, now)
        low, high = region.band
        changes = [float(r / rates[0]) for r in rates]
        if low / min(changes) < high / max(changes):
            low, high = low / min(changes), high / max(changes)
        rules = region.rules
        for _ in range(AMOUNT_DRAWS):
            local = self._local(self.rng.uniform(low, high), currency, rates[0])
            usd = [(local * r).quantize(USD_PLACES, ROUND_HALF_UP) for r in rates]
            if all(
                region.floor <= u <= region.threshold and u * rules.structuring_min_transactions > region.threshold
                for u in usd
            ):
                break
        return str(local)

    def _emit(self, event: dict, *, first: bool) -> Generated:
        out = Generated(event["account_id"].encode(), orjson.dumps(event), self._at, first)
        self._recent.append(out)
        return out

    def _ordinary_account(self) -> tuple[str, _Region, str]:
        """A random ordinary account with room for a transaction in the current and previous spans."""
        rng = self.rng
        region = self.regions[int(rng.random() * len(self.regions))]
        span = int(self._at // region.span)
        if span != region.current:
            region.roll(span)
        counts, size, cap = region.counts, region.size, region.cap
        while True:
            number = int(rng.random() * size)
            count = counts[number]
            if (count >> 4) + (count & 15) < cap:
                break
        counts[number] = count + 1
        return f"{region.prefix}{number:06d}", region, region.currency(number)

    def _new_transaction(self, *, schedule: bool = True) -> dict:
        account, region, currency = self._ordinary_account()
        now = self._now()
        return self._transaction(account, region, currency, self._amount(region, currency, now), now, schedule=schedule)

    def _transaction(
        self,
        account: str,
        region: _Region,
        currency: str,
        amount: str,
        now: datetime,
        *,
        settles: bool = False,
        schedule: bool = True,
    ) -> dict:
        """A transaction's first event (its lifecycle updates scheduled); ``settles``: it ends settled."""
        roll = self.rng.random()
        status = "pending" if roll < 0.60 else "settled" if roll < 0.95 or settles else "failed"
        event = {
            "transaction_id": self._uuid(),
            "account_id": account,
            "counterparty_id": self.rng.choice(self.merchants),
            "amount": amount,
            "currency": currency,
            "region": region.name,
            "status": status,
            "fraud_flag": self.rng.random() < self.fraud_rate,
            "event_time": _rfc3339(now),
            "channel": self.rng.choice(("card", "card", "card", "transfer", "wallet")),
        }
        if not schedule:
            return event
        if status == "pending":
            final = "settled" if settles or self.rng.random() < 0.92 else "failed"
            self._schedule(event, final)
        elif status == "settled" and not settles and self.rng.random() < 0.01:
            self._schedule(event, "reversed")
        return event

    def _schedule(self, event: dict, status: str) -> None:
        due = self._at + self.rng.uniform(0.001, LIFECYCLE_SECONDS)
        heapq.heappush(self._due, (due, self.rng.getrandbits(32), {**event, "status": status}))

    def _start_pattern(self, letter: str) -> dict:
        """A pattern's first transaction, its later ones planned; an ordinary transaction where the region has no
        room for the pattern: no band, or a window whose starts the pattern would take more than a quarter of."""
        region = self.rng.choice(self.regions)
        rules = region.rules
        if letter == "s":
            count = rules.structuring_min_transactions + self.rng.randint(0, 2)
            window = rules.structuring_window_hours * 3600
            spread = min(STRUCTURING_SPREAD, window / 4)
        else:
            count = rules.velocity_max_transactions + self.rng.randint(1, 5)
            window = rules.velocity_window_minutes * 60
            spread = min(VELOCITY_SPREAD, window / 2)
        if (letter == "s" and region.band is None) or count > self.tps * window / 4:
            return self._new_transaction()
        self._started[letter] += 1
        number = f"{letter}{self._started[letter]:06d}"
        planned = (letter, region.prefix + number, region, self.rng.choice(region.currencies))
        # A structuring group larger than the velocity limit keeps its transactions a velocity window apart where its
        # spread allows: the moments, drawn in the spread less the gaps, each move by the gaps before them.
        gap = rules.velocity_window_minutes * 60 + SPAN_SLACK
        if letter == "v" or count <= rules.velocity_max_transactions or (count - 1) * gap > spread:
            gap = 0.0
        later = sorted(self.rng.uniform(0, spread - (count - 1) * gap) for _ in range(count - 1))
        for i, offset in enumerate(later, 1):
            self._planned += 1
            heapq.heappush(self._patterns, (self._at + offset + i * gap, self._planned, planned))
        return self._pattern_transaction(planned)

    def _pattern_transaction(self, planned: tuple) -> dict:
        letter, account, region, currency = planned
        now = self._now()
        amount = self._band_amount(region, currency, now) if letter == "s" else self._amount(region, currency, now)
        return self._transaction(account, region, currency, amount, now, settles=True)

    def _bad(self) -> Generated:
        kind = self.rng.choice(BAD_KINDS)
        if kind == "not_json":
            return Generated(None, b"{not json" + str(self._transactions).encode(), self._at, True)
        event = self._new_transaction(schedule=False)
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
        """The next event in time order: a redelivery, a lifecycle update now due, or the next transaction (a
        pattern's transaction now due, else a new one)."""
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
        if self._patterns and self._patterns[0][0] <= starts:
            out = self._emit(self._pattern_transaction(heapq.heappop(self._patterns)[2]), first=True)
        else:
            roll = self.rng.random()
            if roll < self.bad_rate:
                out = self._bad()
            elif roll < self._structuring_below:
                out = self._emit(self._start_pattern("s"), first=True)
            elif roll < self._velocity_below:
                out = self._emit(self._start_pattern("v"), first=True)
            else:
                out = self._emit(self._new_transaction(), first=True)
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
