"""The event contract: schema file and the validator built on it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import jsonschema
import pytest

from contracts import SCHEMA_PATH, load_schema, required_fields, statuses
from contracts.transaction import EventValidator, InvalidEvent
from txmon.core.settings import DEFAULT_CURRENCIES, DEFAULT_REGIONS

VALID = {
    "transaction_id": "tx-1",
    "account_id": "acc-1",
    "amount": "125.50",
    "currency": "EUR",
    "region": "EU",
    "status": "settled",
    "event_time": "2026-11-24T10:15:00.123Z",
}


@pytest.fixture(scope="module")
def validator() -> EventValidator:
    return EventValidator(DEFAULT_REGIONS, DEFAULT_CURRENCIES)


def raw(**changes) -> bytes:
    event = {**VALID, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def test_schema_is_valid_json_schema_and_matches_the_contract():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert set(required_fields()) == {
        "transaction_id",
        "account_id",
        "amount",
        "currency",
        "region",
        "status",
        "event_time",
    }
    assert statuses() == ("pending", "settled", "failed", "reversed")
    assert tuple(schema["properties"]["region"]["enum"]) == DEFAULT_REGIONS
    assert tuple(schema["properties"]["currency"]["enum"]) == DEFAULT_CURRENCIES
    for example in schema["examples"]:
        jsonschema.validate(example, schema)


def test_configured_sets_replace_the_default_enums():
    schema = load_schema(("EU",), ("EUR", "CHF"))
    assert schema["properties"]["region"]["enum"] == ["EU"]
    assert schema["properties"]["currency"]["enum"] == ["EUR", "CHF"]
    assert load_schema()["properties"]["region"]["enum"] == list(DEFAULT_REGIONS)  # the source is untouched


def test_valid_event_is_typed(validator):
    tx = validator.parse(raw(fraud_flag=True, counterparty_id="m-1", extra={"kept": 1}))
    assert tx.amount == Decimal("125.50") and isinstance(tx.amount, Decimal)
    assert tx.event_time == datetime(2026, 11, 24, 10, 15, 0, 123000, tzinfo=UTC)
    assert tx.fraud_flag is True and tx.counterparty_id == "m-1"
    assert validator.parse(raw()).fraud_flag is False  # absent means false


def test_business_day_is_the_utc_date(validator):
    assert validator.parse(raw(event_time="2026-11-24T23:30:00-05:00")).event_date == date(2026, 11, 25)
    assert validator.parse(raw(event_time="2026-11-25T00:30:00+02:00")).event_date == date(2026, 11, 24)


@pytest.mark.parametrize(
    "amount, expected",
    [
        ("0.0001", "0.0001"),
        ("999999999999.9999", "999999999999.9999"),
        ("10000.00", "10000.00"),
        (7, "7"),
        ("0012.5", "12.5"),
    ],
)
def test_amounts_are_exact(validator, amount, expected):
    assert validator.parse(raw(amount=amount)).amount == Decimal(expected)


def test_json_number_amounts_are_read_from_their_text(validator):
    body = raw(amount="@").replace(b'"@"', b"999999999999.9999")
    assert str(validator.parse(body).amount) == "999999999999.9999"  # a float would give 1000000000000.0
    body = raw(amount="@").replace(b'"@"', b"0.1")
    assert validator.parse(body).amount == Decimal("0.1")


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"amount": "-5.00"}, "amount must be greater than 0"),
        ({"amount": "0"}, "amount must be greater than 0"),
        ({"amount": "0.00001"}, "more than 4 fractional digits"),
        ({"amount": "1000000000000"}, "less than 10^12"),
        ({"amount": "1e3"}, "plain decimal"),
        ({"amount": "abc"}, "not a decimal number"),
        ({"amount": True}, "decimal string or number"),
        ({"amount": None}, "decimal string or number"),
        ({"amount": ...}, "missing required field(s): amount"),
        ({"transaction_id": ..., "region": ...}, "missing required field(s): transaction_id, region"),
        ({"transaction_id": ""}, "transaction_id"),
        ({"transaction_id": "x" * 65}, "transaction_id"),
        ({"currency": "usd"}, "currency 'usd' is not one of the configured currency values"),
        ({"currency": "XYZ"}, "currency 'XYZ' is not one of the configured currency values"),
        ({"region": "MARS"}, "region 'MARS' is not one of the configured region values"),
        ({"status": "approved"}, "status 'approved' is not one of"),
        ({"fraud_flag": "yes"}, "fraud_flag"),
        ({"event_time": "2026-11-24T10:15:00"}, "not an RFC 3339 date-time"),
        ({"event_time": "2026-11-24"}, "not an RFC 3339 date-time"),
        ({"event_time": "2026-02-30T10:00:00Z"}, "not a valid RFC 3339 date-time"),
        ({"event_time": 1732443300}, "event_time"),
    ],
)
def test_contract_violations_have_readable_reasons(validator, changes, reason):
    with pytest.raises(InvalidEvent) as err:
        validator.parse(raw(**changes))
    assert reason in err.value.reason


@pytest.mark.parametrize(
    "body, reason",
    [
        (None, "empty message"),
        (b"", "not valid JSON"),
        (b"{nope", "not valid JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"transaction_id": "a\\u0000b"}', "NUL"),
    ],
)
def test_malformed_messages(validator, body, reason):
    with pytest.raises(InvalidEvent) as err:
        validator.parse(body)
    assert reason in err.value.reason


def test_validator_follows_the_configured_regions():
    eu_only = EventValidator(("EU",), DEFAULT_CURRENCIES)
    eu_only.parse(raw())
    with pytest.raises(InvalidEvent, match="region 'US'"):
        eu_only.parse(raw(region="US"))


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def bounded() -> EventValidator:
    """The validator as ingestion builds it: first partition day and clock skew, with a fixed clock."""
    return EventValidator(
        DEFAULT_REGIONS, DEFAULT_CURRENCIES, first_day=date(2025, 1, 1), max_future_skew_seconds=300, clock=lambda: NOW
    )


@pytest.mark.parametrize(
    "event_time, reason",
    [
        ("9999-12-31T23:30:00-01:00", "outside the years 0001-9999"),
        ("0001-01-01T00:30:00+01:00", "outside the years 0001-9999"),
        ("2099-01-01T00:00:00Z", "in the future, beyond the allowed clock skew of 300s"),
        ("2026-11-27T12:05:01Z", "beyond the allowed clock skew"),
        ("2024-12-31T23:59:59Z", "before the first partition day 2025-01-01"),
        ("2025-01-01T00:30:00+01:00", "before the first partition day"),  # 2024-12-31 in UTC
    ],
)
def test_event_times_no_partition_can_hold_are_refused(bounded, event_time, reason):
    with pytest.raises(InvalidEvent) as err:
        bounded.parse(raw(event_time=event_time))
    assert reason in err.value.reason


def test_event_time_bounds_are_inclusive_and_lower_case_rfc3339_is_read(bounded):
    assert bounded.parse(raw(event_time="2026-11-27T12:05:00Z")).event_date == date(2026, 11, 27)
    assert bounded.parse(raw(event_time="2025-01-01T00:00:00Z")).event_date == date(2025, 1, 1)
    lower = bounded.parse(raw(event_time="2026-11-24t10:15:00.5z"))
    assert lower.event_time == datetime(2026, 11, 24, 10, 15, 0, 500000, tzinfo=UTC)
    assert lower.event_time.tzinfo is UTC


@pytest.mark.parametrize(
    "extra, reason",
    [
        (b"1e-2147483648", "exponent beyond PostgreSQL's numeric range"),
        (b"0e-1001", "exponent beyond PostgreSQL's numeric range"),
        (b"0." + b"0" * 16400 + b"1", "more fractional digits than PostgreSQL's numeric holds"),
        (b"[" * 65 + b"]" * 65, "nested more than 64 levels deep"),
        (b'{"a":' * 70 + b"1" + b"}" * 70, "nested more than 64 levels deep"),
        (b"[" * 1000 + b"]" * 1000, "nested more than 64 levels deep"),  # orjson reads it; stdlib json would recurse
        (b'{"k\\u0000": 1}', "NUL"),
        (b"1e400", "not valid JSON"),  # beyond a double: orjson refuses it
        (b'"\\ud800"', "not valid JSON"),  # a lone surrogate
    ],
)
def test_extra_fields_jsonb_cannot_store_are_refused(validator, extra, reason):
    body = raw(extra="@").replace(b'"@"', extra)
    with pytest.raises(InvalidEvent) as err:
        validator.parse(body)
    assert reason in err.value.reason


@pytest.mark.parametrize(
    "extra",
    [
        b"1e-1000",
        b"1E+308",
        b"-0",
        b"[" * 63 + b"]" * 63,
        b'"text with \\\\u0000 spelled out"',
        b'"\\u200b"',
        b"0." + b"0" * 999 + b"1",
        b'"e' + b"9" * 2000 + b'"',
    ],
)
def test_extra_fields_jsonb_can_store_are_kept(validator, extra):
    validator.parse(raw(extra="@").replace(b'"@"', extra))


def test_reasons_quote_long_values_shortly(validator):
    with pytest.raises(InvalidEvent) as err:
        validator.parse(raw(currency="X" * 5000))
    assert len(err.value.reason) < 300 and "5002 chars" in err.value.reason


# ------------------------------------------------------------------ extra fields: kept only where allowed


def test_an_event_without_extra_fields_is_kept_as_sent(validator):
    assert validator.parse(raw()).raw_event is None
    assert validator.parse(raw(fraud_flag=False, counterparty_id=None)).raw_event is None


def test_extra_fields_not_allowed_are_left_out_of_the_raw_event(validator):
    tx = validator.parse(raw(channel="card", device={"ip": "10.0.0.1"}))
    assert json.loads(tx.raw_event) == VALID  # the contract's fields only, no default filled in
    allowing = EventValidator(DEFAULT_REGIONS, DEFAULT_CURRENCIES, extra_fields=("channel",))
    assert allowing.parse(raw(channel="card")).raw_event is None  # only allowed extras: the message as it is
    kept = allowing.parse(raw(channel="card", device={"ip": "10.0.0.1"})).raw_event
    assert json.loads(kept) == {**VALID, "channel": "card"}


def test_numbers_of_the_kept_raw_event_are_exact():
    """jsonb keeps a number's digits; the raw event without the other fields keeps them too."""
    allowing = EventValidator(DEFAULT_REGIONS, DEFAULT_CURRENCIES, extra_fields=("score", "nested"))
    body = (
        raw(amount="@", score="#", nested="%", dropped=1)
        .replace(b'"@"', b"120.5000")
        .replace(b'"#"', b"0.10000000000000000001")
        .replace(b'"%"', b"[1e-1000, 123456789012345678901234567890, -0, 2.50]")
    )
    kept = allowing.parse(body).raw_event
    exact = json.loads(kept, parse_float=Decimal, parse_int=Decimal)
    assert exact["amount"] == Decimal("120.5000") and str(exact["amount"]) == "120.5000"
    assert str(exact["score"]) == "0.10000000000000000001"
    assert [str(v) for v in exact["nested"]] == ["1E-1000", "123456789012345678901234567890", "-0", "2.50"]
    assert "dropped" not in exact
