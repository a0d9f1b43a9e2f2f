"""FX rates: ``dbt_project/seeds/fx_rates.csv`` is the one source (dbt seeds it into the warehouse)."""
# Rule: a transaction converts at the rate of its currency with the latest ``rate_date`` on or before the UTC date of
# its ``event_time``.

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from functools import cache

from txmon.core.settings import REPO_ROOT

FX_SEED = REPO_ROOT / "dbt_project" / "seeds" / "fx_rates.csv"


@cache
def rates() -> tuple[tuple[str, date, Decimal], ...]:
    with open(FX_SEED, newline="") as fh:
        return tuple(
            (row["currency"], date.fromisoformat(row["rate_date"]), Decimal(row["usd_per_unit"]))
            for row in csv.DictReader(fh)
        )


def usd_per_unit(currency: str, on: date) -> Decimal:
    candidates = [(d, r) for c, d, r in rates() if c == currency and d <= on]
    if not candidates:
        raise KeyError(f"no FX rate for {currency} on or before {on}")
    return max(candidates)[1]
