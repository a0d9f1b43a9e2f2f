"""From a consumed Kafka record to a ``Message``: validated, or carrying the reason it is quarantined."""
# Nothing a record holds escapes from here as an exception: the contract's ``InvalidEvent`` and any other failure while
# reading one record's bytes become that record's quarantine reason.

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from contracts.transaction import EventValidator, InvalidEvent
from ingestion.sink import Message
from txmon.core.settings import Settings


def validator_for(settings: Settings) -> EventValidator:
    """The contract's validator with the deployment's regions, currencies, first day, clock skew and
    the extra fields kept in staging (TXMON_EXTRA_FIELDS)."""
    return EventValidator(
        settings.regions,
        settings.currencies,
        first_day=settings.partitions_start_date,
        max_future_skew_seconds=settings.max_future_skew_seconds,
        extra_fields=settings.extra_fields,
    )


def kafka_timestamp(kind: int, ms: int) -> datetime | None:
    """A record's timestamp in UTC; None when it has none or one no date can hold (any int64 may be sent)."""
    if not kind or ms < 0:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def region_named(value: bytes | None) -> str | None:
    """The `region` string of an invalid message that is still a JSON object (where to quarantine it)."""
    try:
        parsed = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    region = parsed.get("region") if isinstance(parsed, dict) else None
    return region if isinstance(region, str) else None


def to_message(
    validator: EventValidator,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    produced_at: datetime | None,
) -> Message:
    message = Message(partition, offset, key, value, produced_at)
    try:
        message.event = validator.parse(value)
    except InvalidEvent as exc:
        message.reason = exc.reason
        message.region_hint = region_named(value)
    except (RecursionError, MemoryError) as exc:
        message.reason = f"could not be read: {type(exc).__name__}"
    except Exception as exc:  # whatever the bytes hold, the record is quarantined, not crashed on
        message.reason = f"could not be validated: {type(exc).__name__}: {str(exc)[:200]}"
    return message
