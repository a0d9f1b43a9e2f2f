"""staging.transactions, per region x day batch: what landed obeys the contract."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import great_expectations.expectations as gxe

from txmon.core.settings import Settings

RELATION = "staging.transactions"
KEYS = ("transaction_id", "account_id", "status", "event_time", "amount", "currency", "region")


COLUMN_SINCE = "ingested_at"


def batch_query(relation: str, day: date, region: str, since: datetime | None = None) -> str:
    # The day as a half-open range on event_time, so PostgreSQL reads that day's partition only.
    # Since a publication: only what landed after it (everything before was checked then).
    narrowed = f" AND {COLUMN_SINCE} >= '{since.isoformat()}'::timestamptz" if since else ""
    return (
        f"SELECT * FROM {relation} WHERE event_time >= '{day.isoformat()}'::date::timestamp AT TIME ZONE 'UTC' "  # noqa: S608
        f"AND event_time < ('{day.isoformat()}'::date + 1)::timestamp AT TIME ZONE 'UTC' AND region = '{region}'"
        + narrowed
    )


def expectations(settings: Settings) -> list:
    latest_allowed = datetime.now(UTC) + timedelta(seconds=settings.max_future_skew_seconds)
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in KEYS),
        gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=list(settings.currencies)),
        gxe.ExpectColumnValuesToBeInSet(column="region", value_set=list(settings.regions)),
        gxe.ExpectColumnValuesToBeBetween(column="event_time", max_value=latest_allowed),
    ]
