"""marts.daily_settlements (and its reporting copy), per region x day batch."""

from __future__ import annotations

from datetime import date, datetime

import great_expectations.expectations as gxe

from txmon.core.settings import Settings

RELATION = "marts.daily_settlements"
GRAIN = ("settlement_date", "region", "currency")


def batch_query(relation: str, day: date, region: str, since: datetime | None = None) -> str:
    # Rebuilt whole by every refresh (an aggregate): always checked whole.
    return f"SELECT * FROM {relation} WHERE settlement_date = '{day.isoformat()}'::date AND region = '{region}'"  # noqa: S608 (a date, a configured region)


def expectations(settings: Settings) -> list:
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (*GRAIN, "transaction_count", "settled_count")),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(GRAIN)),
        gxe.ExpectColumnValuesToBeBetween(column="transaction_count", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="settled_count", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="settled_volume", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="transaction_count", column_B="settled_count", or_equal=True
        ),
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=list(settings.currencies)),
    ]
