"""marts.suspicious_activity (and its reporting copy), per region x day batch."""

from __future__ import annotations

from datetime import date, datetime

import great_expectations.expectations as gxe

from txmon.core.settings import Settings

RELATION = "marts.suspicious_activity"
KEYS = ("transaction_id", "account_id", "region", "amount", "currency", "amount_usd", "event_time", "reasons")


COLUMN_SINCE = "refreshed_at"


def batch_query(relation: str, day: date, region: str, since: datetime | None = None) -> str:
    # Since a publication: only the rows rebuilt after it (the others were checked then).
    narrowed = f" AND {COLUMN_SINCE} >= '{since.isoformat()}'::timestamptz" if since else ""
    return f"SELECT * FROM {relation} WHERE event_date = '{day.isoformat()}'::date AND region = '{region}'" + narrowed  # noqa: S608 (a date, a configured region, a timestamp)


def expectations(settings: Settings) -> list:
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in KEYS),
        gxe.ExpectColumnValuesToBeUnique(column="transaction_id"),
        gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="amount_usd", min_value=0),
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=list(settings.currencies)),
        gxe.ExpectColumnValuesToBeInSet(column="region", value_set=list(settings.regions)),
    ]
