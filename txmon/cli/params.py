"""The argument types the commands share: each parses one command-line word or rejects it with a
one-line reason (click reports it as a usage error, exit 2)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

from txmon.core.settings import Settings


class Checked(click.ParamType):
    """A type from a function that parses a word or raises ValueError with the reason."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # a default, already of the type
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} must be a positive number")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be zero or a positive number")
    return value


def _rate(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise ValueError(f"{text!r} must be between 0 and 1")
    return value


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a UTC offset, e.g. 2026-11-24T00:00:00Z")
    return moment


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a YYYY-MM-DD date") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 256:
        raise ValueError(f"{text!r} must be between 0 and 256")
    return value


def _whole(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise ValueError(f"{text!r} must be above 0")
    return value


def _partitions(text: str) -> list[int]:
    reason = f"{text!r} is not a comma-separated list of partition numbers"
    try:
        parts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(reason) from None
    if not parts or any(p < 0 for p in parts):
        raise ValueError(reason)
    return parts


POSITIVE = Checked("number", _positive_float)
NON_NEGATIVE = Checked("number", _non_negative_float)
RATE = Checked("rate", _rate)
TIMESTAMP = Checked("timestamp", _timestamp)
DAY = Checked("YYYY-MM-DD", _day)
COUNT = Checked("count", _count)
WHOLE = Checked("integer", _whole)
PARTITIONS = Checked("partitions", _partitions)


def check_partition(settings: Settings, day: date, region: str) -> None:
    """Raise ValueError with a one-line reason when (day, region) is not a partition of ``settings``."""
    today = datetime.now(UTC).date()
    if region not in settings.regions:
        raise ValueError(f"region {region!r} is not one of {', '.join(settings.regions)}")
    if not settings.partitions_start_date <= day <= today:
        raise ValueError(f"{day} is outside the partitions ({settings.partitions_start_date} to {today})")


def days(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
