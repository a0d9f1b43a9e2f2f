"""Validate one Kafka message against the transaction contract.

``EventValidator.parse`` turns the raw bytes of a message into a typed ``Transaction`` or raises
``InvalidEvent`` with a reason a person can read. The JSON Schema does the structural checks; what
JSON Schema cannot say exactly (decimal money, real calendar dates, what PostgreSQL can store) is
checked here, after it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

import fastjsonschema
import orjson

from contracts import load_schema

MAX_AMOUNT = Decimal(10) ** 12
AMOUNT_EXPONENT = -4  # at most 4 fractional digits
MAX_MESSAGE_BYTES = 1_000_000

# PostgreSQL text and jsonb cannot hold NUL; a message carrying one is quarantined, not crashed on.
_NUL_ESCAPE = re.compile(rb"\\u0000", re.IGNORECASE)


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
    event_time: datetime

    @property
    def event_date(self) -> date:
        """The business day: the UTC date of event_time."""
        return self.event_time.astimezone(UTC).date()


def _amount(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidEvent(f"amount must be a decimal string or number, got {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidEvent(f"amount {value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise InvalidEvent(f"amount {value!r} is not a finite number")
    if amount <= 0:
        raise InvalidEvent(f"amount must be greater than 0, got {value}")
    if amount >= MAX_AMOUNT:
        raise InvalidEvent(f"amount must be less than 10^12, got {value}")
    if amount.as_tuple().exponent < AMOUNT_EXPONENT:
        raise InvalidEvent(f"amount {value} has more than 4 fractional digits")
    return amount


def _event_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidEvent(f"event_time {value!r} is not a valid RFC 3339 date-time: {exc}") from None
    if moment.tzinfo is None:  # the schema's pattern already demands an offset; keep the guarantee here
        raise InvalidEvent(f"event_time {value!r} is not an RFC 3339 date-time with an offset")
    return moment


def _field(name: str) -> str:
    return name.removeprefix("data.").removeprefix("data") or "event"


class EventValidator:
    """Validates messages against the contract with a deployment's regions and currencies."""

    def __init__(self, regions: tuple[str, ...], currencies: tuple[str, ...]):
        schema = load_schema(regions, currencies)
        self._check = fastjsonschema.compile(schema)
        self._enums = {"region": list(regions), "currency": list(currencies)}

    def _schema_reason(self, exc: fastjsonschema.JsonSchemaValueException, event: dict) -> str:
        field = _field(exc.name)
        if exc.rule == "required":
            missing = [f for f in exc.rule_definition if f not in event]
            return f"missing required field(s): {', '.join(missing)}"
        if exc.rule == "enum" and field in self._enums:
            return f"{field} {exc.value!r} is not one of the configured {field} values {self._enums[field]}"
        if exc.rule == "enum":
            return f"{field} {exc.value!r} is not one of {exc.rule_definition}"
        if field == "amount":
            _amount(exc.value)  # raises with a precise reason where there is one
            return f"amount {exc.value!r} must be a plain decimal like \"125.50\" (no exponent or sign)"
        if field == "event_time" and isinstance(exc.value, str):
            _event_time(exc.value)  # raises with a precise reason for impossible dates
            return f"event_time {exc.value!r} is not an RFC 3339 date-time with an offset"
        return f"{field}: {exc.message.removeprefix(exc.name + ' ').removeprefix('data ')}"

    def parse(self, value: bytes | None) -> Transaction:
        if value is None:
            raise InvalidEvent("empty message (no value)")
        if len(value) > MAX_MESSAGE_BYTES:
            raise InvalidEvent(f"message of {len(value)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
        if b"\x00" in value or (b"\\u" in value and _NUL_ESCAPE.search(value)):
            raise InvalidEvent("contains a NUL character, which PostgreSQL cannot store")
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"not valid JSON: {exc}") from None
        if not isinstance(event, dict):
            raise InvalidEvent(f"not a JSON object but a JSON {type(event).__name__}")
        raw_amount = event.get("amount")
        if isinstance(raw_amount, float | int) and not isinstance(raw_amount, bool):
            # A JSON number: read it again from its text, exactly, never through a float.
            event["amount"] = json.loads(value, parse_float=Decimal).get("amount")
        try:
            self._check(event)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidEvent(self._schema_reason(exc, event)) from None
        return Transaction(
            transaction_id=event["transaction_id"],
            account_id=event["account_id"],
            counterparty_id=event.get("counterparty_id"),
            amount=_amount(event["amount"]),
            currency=event["currency"],
            region=event["region"],
            status=event["status"],
            fraud_flag=event.get("fraud_flag", False),
            event_time=_event_time(event["event_time"]),
        )
