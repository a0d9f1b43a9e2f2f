"""marts.suspicious_activity (and its reporting copy), per region x day batch."""

from __future__ import annotations

from datetime import date

import great_expectations.expectations as gxe

from txmon.config import Settings

RELATION = "marts.suspicious_activity"
KEYS = ("transaction_id", "account_id", "region", "amount", "currency", "amount_usd", "event_time", "reasons")


def batch_query(relation: str, day: date, region: str) -> str:
    return f"SELECT * FROM {relation} WHERE event_date = '{day.isoformat()}'::date AND region = '{region}'"  # noqa: S608 (a date, a configured region)


def expectations(settings: Settings) -> list:
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in KEYS),
        gxe.ExpectColumnValuesToBeUnique(column="transaction_id"),
        gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="amount_usd", min_value=0),
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=list(settings.currencies)),
        gxe.ExpectColumnValuesToBeInSet(column="region", value_set=list(settings.regions)),
    ]
