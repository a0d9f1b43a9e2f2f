"""The data-quality checks of each checked table, per region x day, in one place.

- Great Expectations suites (expectations/): the contract's rules on staging and the marts.
- Reconciliations, the ones auditors ask for, computed straight from staging, not from the dbt
  models they check: the settlements equal a direct aggregate of the latest events; every
  suspicious transaction exists in staging; every consumed Kafka offset is landed, a duplicate or
  quarantined.

Orchestration runs them as Dagster asset checks; the write-audit-publish step (txmon/reporting.py)
publishes a mart partition only when all of its blocking checks passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from txmon.config import Settings
from txmon.db import connect
from txmon.dbt import ANALYTICAL_WORK_MEM


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    summary: str
    metadata: dict = field(default_factory=dict)


# Each transaction with an event in the slice (the day as a half-open range on event_time, so
# PostgreSQL reads only that day's partitions), at its latest event (the contract's rule: greatest
# event_time, then the later lifecycle state, then the later offset), looked for up to the lifecycle
# window after the day; kept when that latest event is in the slice.
SETTLEMENTS_FROM_STAGING = """
WITH bounds AS (
    SELECT %(day)s::date::timestamp AT TIME ZONE 'UTC' AS day_start,
           (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC' AS day_end,
           (%(day)s::date + 1 + %(window)s::int)::timestamp AT TIME ZONE 'UTC' AS window_end
), candidates AS (
    SELECT DISTINCT transaction_id FROM staging.transactions, bounds
    WHERE event_time >= day_start AND event_time < day_end AND region = %(region)s
), latest AS (
    SELECT DISTINCT ON (t.transaction_id COLLATE "C")
           t.transaction_id, t.region, t.currency, t.status, t.amount, t.event_time
    FROM staging.transactions AS t JOIN candidates USING (transaction_id), bounds
    WHERE t.event_time >= day_start AND t.event_time < window_end
    ORDER BY t.transaction_id COLLATE "C", t.event_time DESC,
             CASE t.status WHEN 'pending' THEN 0 WHEN 'reversed' THEN 2 ELSE 1 END DESC, t."offset" DESC
)
SELECT latest.currency, count(*), count(*) FILTER (WHERE latest.status = 'settled'),
       coalesce(sum(latest.amount) FILTER (WHERE latest.status = 'settled'), 0)
FROM latest, bounds
WHERE latest.event_time >= day_start AND latest.event_time < day_end AND latest.region = %(region)s
GROUP BY latest.currency
"""
OFFSETS_ACCOUNTED = """
SELECT (SELECT count(*) FROM staging.transactions
        WHERE topic = %(t)s AND "partition" = %(p)s AND "offset" BETWEEN %(lo)s AND %(hi)s)
     + (SELECT count(*) FROM staging.duplicate_transactions
        WHERE topic = %(t)s AND "partition" = %(p)s AND "offset" BETWEEN %(lo)s AND %(hi)s)
     + (SELECT count(*) FROM staging.rejected_transactions
        WHERE topic = %(t)s AND "partition" = %(p)s AND "offset" BETWEEN %(lo)s AND %(hi)s)
"""


def settlements_reconcile(settings: Settings, day: date, region: str) -> CheckOutcome:
    """marts.daily_settlements for the slice equals a direct aggregate of staging, to the cent."""
    params = {"day": day, "region": region, "window": settings.lifecycle_window_days}
    with connect(settings.dsn_for_region(region), autocommit=True, purpose="check") as conn:
        conn.execute(f"SET work_mem = '{ANALYTICAL_WORK_MEM}'")
        expected = {
            currency: (n, s, v)
            for currency, n, s, v in conn.execute(SETTLEMENTS_FROM_STAGING, params)
        }
    with connect(settings.warehouse_dsn, autocommit=True, purpose="check") as conn:
        actual = {
            currency: (n, s, v)
            for currency, n, s, v in conn.execute(
                """SELECT currency, transaction_count, settled_count, settled_volume FROM marts.daily_settlements
                   WHERE settlement_date = %(day)s AND region = %(region)s""",
                params,
            )
        }
    mismatches = [
        {"currency": c, "staging": _row(expected.get(c)), "mart": _row(actual.get(c))}
        for c in sorted(set(expected) | set(actual))
        if expected.get(c) != actual.get(c)
    ]
    return CheckOutcome(
        name="settlements_reconcile_with_staging",
        passed=not mismatches,
        summary=(
            f"{len(actual)} currencies match staging" if not mismatches else f"{len(mismatches)} currencies differ"
        ),
        metadata={
            "currencies": len(expected),
            "transactions": sum(n for n, _, _ in expected.values()),
            "settled_volume_by_currency": {c: str(v) for c, (_, _, v) in sorted(expected.items())},
            "mismatches": mismatches,
        },
    )


def _row(row: tuple | None) -> dict | None:
    return None if row is None else {"count": row[0], "settled": row[1], "volume": str(Decimal(row[2]))}


def suspicious_in_staging(settings: Settings, day: date, region: str) -> CheckOutcome:
    """Every row of marts.suspicious_activity for the slice is an event landed in staging."""
    with connect(settings.warehouse_dsn, autocommit=True, purpose="check") as conn:
        rows = conn.execute(
            """SELECT transaction_id, event_time, amount, currency FROM marts.suspicious_activity
               WHERE event_date = %s AND region = %s""",
            (day, region),
        ).fetchall()
    with connect(settings.dsn_for_region(region), autocommit=True, purpose="check") as conn:
        missing = [
            tx
            for (tx,) in conn.execute(
                """SELECT m.id FROM unnest(%s::text[], %s::timestamptz[], %s::numeric[], %s::text[])
                       AS m(id, event_time, amount, currency)
                   WHERE NOT EXISTS (
                       SELECT 1 FROM staging.transactions AS t
                       WHERE t.transaction_id = m.id AND t.event_time = m.event_time
                         AND t.amount = m.amount AND t.currency = m.currency AND t.region = %s)""",
                ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], region),
            )
        ]
    return CheckOutcome(
        name="suspicious_in_staging",
        passed=not missing,
        summary=f"{len(rows)} suspicious transactions, {len(missing)} not in staging",
        metadata={"suspicious_transactions": len(rows), "not_in_staging": missing[:20]},
    )


def kafka_offsets_accounted(settings: Settings) -> CheckOutcome:
    """Every offset consumed since the last audit is landed, a duplicate or quarantined, in exactly
    one database. Offsets every database has consumed are counted; the audited position advances
    only when the counts match."""
    dsns = list(settings.databases())
    consumed: dict[int, int] = {}
    first: dict[int, int] = {}
    for dsn in dsns:
        with connect(dsn, autocommit=True, purpose="check") as conn:
            for p, nxt in conn.execute(
                'SELECT "partition", next_offset FROM staging.kafka_offsets WHERE topic = %s', (settings.topic,)
            ):
                consumed[p] = min(consumed.get(p, nxt), nxt)
            for p, lo in conn.execute(
                """SELECT key::int, min((value->>0)::bigint) FROM staging.ingest_batches, jsonb_each(offsets)
                   GROUP BY key""",
            ):
                first[p] = min(first.get(p, lo), lo)
    with connect(settings.warehouse_dsn, purpose="check") as audit:
        verified = dict(
            audit.execute(
                'SELECT "partition", verified_through FROM staging.offset_audit WHERE topic = %s FOR UPDATE',
                (settings.topic,),
            ).fetchall()
        )
        gaps = []
        audited = 0
        for p, nxt in sorted(consumed.items()):
            lo, hi = verified.get(p, first.get(p, nxt) - 1) + 1, nxt - 1
            if hi < lo:
                continue
            counted = 0
            for dsn in dsns:
                with connect(dsn, autocommit=True, purpose="check") as conn:
                    counted += conn.execute(
                        OFFSETS_ACCOUNTED,
                        {"t": settings.topic, "p": p, "lo": lo, "hi": hi},
                    ).fetchone()[0]
            audited += hi - lo + 1
            if counted != hi - lo + 1:
                gaps.append({"partition": p, "from": lo, "to": hi, "expected": hi - lo + 1, "accounted": counted})
                continue
            audit.execute(
                """INSERT INTO staging.offset_audit (topic, "partition", verified_through) VALUES (%s, %s, %s)
                   ON CONFLICT (topic, "partition") DO UPDATE SET verified_through = excluded.verified_through,
                                                                   verified_at = now()""",
                (settings.topic, p, hi),
            )
    return CheckOutcome(
        name="kafka_offsets_accounted",
        passed=not gaps,
        summary=f"{audited} offsets audited" + (f", {len(gaps)} partitions do not add up" if gaps else ""),
        metadata={"offsets_audited": audited, "partitions_not_adding_up": gaps},
    )


# Which checks guard which table, per region x day partition (GX suites are named gx_<table>).
MART_CHECKS = {
    "suspicious_activity": ("gx_suspicious_activity", "suspicious_in_staging"),
    "daily_settlements": ("gx_daily_settlements", "settlements_reconcile_with_staging"),
}
STAGING_CHECKS = ("gx_staging_transactions",)


def run_check(settings: Settings, name: str, day: date, region: str) -> CheckOutcome:
    """One named check on one region x day partition."""
    if name.startswith("gx_"):
        from expectations import validate

        return validate(settings, name.removeprefix("gx_"), day, region)
    if name == "suspicious_in_staging":
        return suspicious_in_staging(settings, day, region)
    if name == "settlements_reconcile_with_staging":
        return settlements_reconcile(settings, day, region)
    raise ValueError(f"no check {name!r}")
