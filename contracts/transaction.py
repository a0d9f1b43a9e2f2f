"""Validate one Kafka message against the transaction contract."""
# ``EventValidator.parse`` turns the raw bytes of a message into a typed ``Transaction`` or raises ``InvalidEvent`` with
# a reason a person can read. The JSON Schema does the structural checks; what JSON Schema cannot say exactly is checked
# here, after it:
#
# - money is decimal, read from the message's text, never through a float;
# - ``event_time`` is a real instant that Python and PostgreSQL can both hold, not further in the future than the
#   allowed clock skew and not before the first partition day;
# - the whole message is JSON that PostgreSQL's ``jsonb`` stores as it is: no NUL character, no number outside
#   PostgreSQL's ``numeric`` range, at most ``MAX_NESTING`` levels of arrays and objects, at most ``MAX_MESSAGE_BYTES``
#   bytes.
#
# Extra fields (beyond the contract's) are kept with the event only when the deployment allows them (``extra_fields``):
# an event carrying others gets ``raw_event``, the JSON to keep instead of the message, with the contract's fields and
# the allowed ones only, numbers exactly as sent. The common event, with no other field, keeps ``raw_event`` None and
# costs one set comparison.
#
# What this module accepts, every later stage can store and compute with: the ingestion sink still quarantines, with
# PostgreSQL's own words, anything the database refuses that got past these rules.

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

import fastjsonschema
import orjson

from contracts import fields, load_schema

MAX_AMOUNT = Decimal(10) ** 12
AMOUNT_EXPONENT = -4  # at most 4 fractional digits
MAX_MESSAGE_BYTES = 1_000_000
MAX_NESTING = 64  # levels of arrays and objects, the event object included
# PostgreSQL's numeric (what jsonb stores numbers as): a literal's exponent is at most 1000 in
# magnitude, and at most 16383 digits may follow the decimal point.
NUMERIC_MAX_EXPONENT = 1000
NUMERIC_MAX_SCALE = 16383
REASON_VALUE_CHARS = 80  # a value quoted in a reason is cut to this length
CONTRACT_FIELDS = frozenset(fields())

# Cheap pre-filters (one C-level scan of the bytes); the exact check runs only on a hit.
_NUL_ESCAPE = re.compile(rb"\\u0000", re.IGNORECASE)
_LONG_NUMBER = re.compile(rb"[eE][+-]?[0-9]{4}|\.[0-9]{1000}|[0-9]{1000}")


class InvalidEvent(ValueError):
    """The message breaks the contract; ``reason`` says how."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Transaction:
    transaction_id: str
    account_id: str
    counterparty_id: str | None
    amount: Decimal
    currency: str
    region: str
    status: str
    fraud_flag: bool
    event_time: datetime  # always in UTC
    event_date: date  # the business day: the UTC date of event_time
    # What to keep as the raw event when not the message itself: the message without its extra
    # fields that are not allowed (None: the message has none, it is kept as it is).
    raw_event: bytes | None = None


def quoted(value: object) -> str:
    """A value for a reason: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= REASON_VALUE_CHARS else f"{text[:REASON_VALUE_CHARS]}...({len(text)} chars)"


def _amount(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidEvent(f"amount must be a decimal string or number, got {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidEvent(f"amount {quoted(value)} is not a decimal number") from None
    if not amount.is_finite():
        raise InvalidEvent(f"amount {quoted(value)} is not a finite number")
    if amount <= 0:
        raise InvalidEvent(f"amount must be greater than 0, got {quoted(value)}")
    if amount >= MAX_AMOUNT:
        raise InvalidEvent(f"amount must be less than 10^12, got {quoted(value)}")
    exponent = amount.as_tuple().exponent  # an int: the amount is finite ("n", "N", "F" are NaN and infinity)
    if isinstance(exponent, int) and exponent < AMOUNT_EXPONENT:
        raise InvalidEvent(f"amount {quoted(value)} has more than 4 fractional digits")
    return amount


def _event_time(value: str) -> datetime:
    """The instant in UTC. RFC 3339 allows a lower-case t and z; Python wants them upper-case."""
    try:
        moment = datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise InvalidEvent(f"event_time {quoted(value)} is not a valid RFC 3339 date-time: {exc}") from None
    if moment.tzinfo is None:  # the schema's pattern already demands an offset; keep the guarantee here
        raise InvalidEvent(f"event_time {quoted(value)} is not an RFC 3339 date-time with an offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(f"event_time {quoted(value)} lies outside the years 0001-9999 in UTC") from None


def _number(text: str) -> Decimal:
    """parse_float/parse_int hook: refuse a literal PostgreSQL's numeric cannot hold."""
    mantissa, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > NUMERIC_MAX_EXPONENT:
        raise InvalidEvent(f"the number {quoted(text)} has an exponent beyond PostgreSQL's numeric range (1000)")
    scale = len(mantissa.partition(".")[2]) - (int(exponent) if exponent else 0)
    if scale > NUMERIC_MAX_SCALE:
        raise InvalidEvent(f"the number {quoted(text)} has more fractional digits than PostgreSQL's numeric holds")
    return Decimal(text)


def _read_exactly(value: bytes) -> dict:
    """The message with every number as an exact Decimal, refused when PostgreSQL's numeric cannot hold it."""
    return json.loads(value, parse_float=_number, parse_int=_number)


def _check_structure(event: dict, *, nul: bool) -> None:
    """Nesting depth and, when asked, NUL characters in any key or string (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(event, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_NESTING:
                raise InvalidEvent(f"nested more than {MAX_NESTING} levels deep")
            for key, item in value.items():
                if nul and "\x00" in key:
                    raise InvalidEvent("contains a NUL character, which PostgreSQL cannot store")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_NESTING:
                raise InvalidEvent(f"nested more than {MAX_NESTING} levels deep")
            stack.extend((item, depth + 1) for item in value)
        elif nul and isinstance(value, str) and "\x00" in value:
            raise InvalidEvent("contains a NUL character, which PostgreSQL cannot store")


def _exact_number(value: object) -> orjson.Fragment:
    """orjson's hook for the Decimals of an exactly read event: the number's own digits."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"cannot encode {type(value).__name__}")


def _field(name: str) -> str:
    return name.removeprefix("data.").removeprefix("data") or "event"


class EventValidator:
    """Validates messages against the contract with a deployment's regions, currencies and days.

    ``first_day``: events whose business day is earlier are refused (no partition holds them).
    ``max_future_skew_seconds``: events further in the future than this are refused.
    ``clock``: the current Unix time (injectable for tests).
    ``extra_fields``: the extra fields kept in the event's raw JSON; others are left out of ``raw_event``.
    """

    def __init__(
        self,
        regions: tuple[str, ...],
        currencies: tuple[str, ...],
        *,
        first_day: date | None = None,
        max_future_skew_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        extra_fields: Iterable[str] = (),
    ):
        schema = load_schema(regions, currencies)
        self._check = fastjsonschema.compile(schema)
        self._enums = {"region": list(regions), "currency": list(currencies)}
        self.first_day = first_day
        self.max_future_skew_seconds = max_future_skew_seconds
        self.clock = clock
        self._kept = CONTRACT_FIELDS | frozenset(extra_fields)

    def _schema_reason(self, exc: fastjsonschema.JsonSchemaValueException, event: dict) -> str:
        name = exc.name or ""  # always set by the compiled validator (the library types it optional)
        field = _field(name)
        if exc.rule == "required":
            missing = [f for f in exc.rule_definition if f not in event]
            return f"missing required field(s): {', '.join(missing)}"
        if exc.rule == "enum" and field in self._enums:
            return f"{field} {quoted(exc.value)} is not one of the configured {field} values {self._enums[field]}"
        if exc.rule == "enum":
            return f"{field} {quoted(exc.value)} is not one of {exc.rule_definition}"
        if field == "amount":
            _amount(exc.value)  # raises with a precise reason where there is one
            return f'amount {quoted(exc.value)} must be a plain decimal like "125.50" (no exponent or sign)'
        if field == "event_time" and isinstance(exc.value, str):
            _event_time(exc.value)  # raises with a precise reason for impossible dates
            return f"event_time {quoted(exc.value)} is not an RFC 3339 date-time with an offset"
        return f"{field}: {exc.message.removeprefix(name + ' ').removeprefix('data ')}"[:300]

    def _in_window(self, moment: datetime, text: str) -> date:
        day = moment.date()
        if self.first_day is not None and day < self.first_day:
            raise InvalidEvent(
                f"event_time {quoted(text)} falls on {day}, before the first partition day {self.first_day}"
            )
        if self.max_future_skew_seconds is not None:
            ahead = moment.timestamp() - self.clock()
            if ahead > self.max_future_skew_seconds:
                raise InvalidEvent(
                    f"event_time {quoted(text)} is {ahead:.0f}s in the future, beyond the allowed clock skew of "
                    f"{self.max_future_skew_seconds:g}s"
                )
        return day

    def _raw_event(self, event: dict, value: bytes, exact: dict | None) -> bytes | None:
        """The event without its extra fields that are not allowed; None when it has none.

        The contract's values are exact in ``event`` already (strings, booleans, the amount as a
        Decimal when sent as a number); allowed extra fields are read again from the message's text
        so that their numbers keep every digit, as jsonb would have kept them.
        """
        if event.keys() <= self._kept:
            return None
        kept = event.copy()  # set operations on the keys: no Python-level loop over the fields
        for name in event.keys() - self._kept:
            del kept[name]
        allowed = kept.keys() - CONTRACT_FIELDS
        if allowed:
            exact = exact if exact is not None else _read_exactly(value)
            for name in allowed:
                kept[name] = exact[name]
        return orjson.dumps(kept, default=_exact_number)

    def parse(self, value: bytes | None) -> Transaction:
        if value is None:
            raise InvalidEvent("empty message (no value)")
        if len(value) > MAX_MESSAGE_BYTES:
            raise InvalidEvent(f"message of {len(value)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
        if b"\x00" in value:
            raise InvalidEvent("contains a NUL character, which PostgreSQL cannot store")
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"not valid JSON: {exc}") from None
        if not isinstance(event, dict):
            raise InvalidEvent(f"not a JSON object but a JSON {type(event).__name__}")
        nul = b"\\u" in value and _NUL_ESCAPE.search(value) is not None
        if nul or value.count(b"[") + value.count(b"{") > MAX_NESTING:
            _check_structure(event, nul=nul)
        exact = None
        raw_amount = event.get("amount")
        amount_is_number = isinstance(raw_amount, float | int) and not isinstance(raw_amount, bool)
        if amount_is_number or _LONG_NUMBER.search(value):
            # Read the numbers again from their text, exactly, never through a float: the amount,
            # and every literal PostgreSQL's numeric must hold (nesting is bounded by now).
            exact = _read_exactly(value)
            if amount_is_number:
                event["amount"] = exact.get("amount")
        raw_event = self._raw_event(event, value, exact)  # before the schema check fills in defaults
        try:
            self._check(event)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidEvent(self._schema_reason(exc, event)) from None
        text = event["event_time"]
        moment = _event_time(text)
        return Transaction(
            transaction_id=event["transaction_id"],
            account_id=event["account_id"],
            counterparty_id=event.get("counterparty_id"),
            amount=_amount(event["amount"]),
            currency=event["currency"],
            region=event["region"],
            status=event["status"],
            fraud_flag=event.get("fraud_flag", False),
            event_time=moment,
            event_date=self._in_window(moment, text),
            raw_event=raw_event,
        )
