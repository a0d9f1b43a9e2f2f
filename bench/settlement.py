"""Settlement at scale: one region-day of 10,000,000 events, and a 7-day x 3-region backfill."""
# The events are generated inside PostgreSQL straight into ``staging.transactions`` (this section measures the marts and
# their checks, not ingestion; 10M events through Kafka would take minutes before the clock starts). They look like the
# stream: random UUIDs, log-normal amounts in the region's currencies, 60% pending then settled (92%) or failed, 35%
# settled, 5% failed, ~0.5% flagged, Kafka coordinates unique per event.
#
# - mart + checks: `txmon materialize --date D --region R` on the tables set up empty before the day was loaded (every
#   asset of the partition through Dagster: the transactions' state merged with the day's events, both marts, every
#   blocking check, publication to reporting);
# - backfill: `txmon backfill --from D1 --to D7` over every region.

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from bench.common import BenchError, reset, run_measured, txmon_argv
from txmon.core.db import connect
from txmon.core.settings import Settings
from txmon.devtools.generate import REGION_CURRENCIES

GENERATE = """
WITH tx AS (
    SELECT g,
           md5(%(key)s || g::text)::uuid::text AS transaction_id,
           'acc-' || lower(%(region)s) || '-' || lpad((g %% 20000)::text, 6, '0') AS account_id,
           'mch-' || lpad((g %% 2000)::text, 5, '0') AS counterparty_id,
           %(currencies)s::text[] AS currencies,
           %(day)s::date::timestamp AT TIME ZONE 'UTC' + make_interval(secs => (g - 1) * 86000.0 / %(n)s) AS t0,
           greatest(round(exp(ln(45) + 1.3 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))::numeric, 2),
                    0.01) AS amount,
           g %% 100 AS roll,
           random() < 0.005 AS flagged
    FROM generate_series(1, %(n)s) AS g
), events AS (
    SELECT tx.*, 0 AS seq,
           CASE WHEN roll < 60 THEN 'pending' WHEN roll < 95 THEN 'settled' ELSE 'failed' END AS status,
           t0 AS event_time
    FROM tx
    UNION ALL
    SELECT tx.*, 1, CASE WHEN (g / 100) %% 100 < 92 THEN 'settled' ELSE 'failed' END, t0 + interval '2.5 seconds'
    FROM tx WHERE roll < 60
)
INSERT INTO staging.transactions (transaction_id, status, event_time, account_id, counterparty_id, amount, currency,
                                  region, fraud_flag, produced_at, topic, "partition", "offset", raw_event)
SELECT transaction_id, status, event_time, account_id, counterparty_id, amount,
       currencies[1 + g %% cardinality(currencies)], %(region)s, flagged, event_time, %(topic)s, %(partition)s,
       %(first_offset)s + 2 * g + seq,
       jsonb_build_object('transaction_id', transaction_id, 'account_id', account_id,
                          'counterparty_id', counterparty_id, 'amount', amount::text,
                          'currency', currencies[1 + g %% cardinality(currencies)], 'region', %(region)s,
                          'status', status, 'fraud_flag', flagged,
                          'event_time', to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
FROM events
"""
EVENTS_PER_TRANSACTION = 1.6  # 60% of the transactions have a second event


def transactions_for(events: int) -> int:
    """The transactions of a generated day of about ``events`` events."""
    return max(1, round(events / EVENTS_PER_TRANSACTION))


def load_day(settings: Settings, day: date, region: str, events: int, partition: int) -> int:
    """Generate about ``events`` events of (day, region); returns how many were written."""
    n = transactions_for(events)
    currencies = [c for c in REGION_CURRENCIES.get(region, ()) if c in settings.currencies] or ["USD"]
    with connect(settings.dsn_for_region(region), autocommit=True, purpose="bench") as conn:
        conn.execute("SELECT staging.ensure_transactions_partition(%s)", (day,))
        cur = conn.execute(
            GENERATE,
            {
                "key": f"{day}{region}",
                "region": region,
                "currencies": sorted(set(currencies)),
                "day": day,
                "n": n,
                "topic": settings.topic,
                "partition": partition,
                "first_offset": 0,
            },
        )
        written = cur.rowcount
        if written <= 0:
            raise BenchError(f"generating {day} {region} wrote no events")
        # Their identities, as the landing writes them (the staging_events_unique check reads them).
        conn.execute(
            """INSERT INTO staging.event_identities (transaction_id, status, event_time, topic, "partition", "offset")
               SELECT transaction_id, status, event_time, topic, "partition", "offset" FROM staging.transactions
               WHERE event_time >= %(day)s::date::timestamp AT TIME ZONE 'UTC'
                 AND event_time < (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC' AND region = %(region)s""",
            {"day": day, "region": region},
        )
        # As autovacuum would soon after a bulk load; done here so that it does not run during the timings.
        conn.execute("VACUUM (ANALYZE) staging.transactions, staging.event_identities")
    return written


def _timed(argv: list[str], env: dict[str, str]) -> float:
    measured = run_measured(argv, env)
    if measured.returncode != 0:
        raise BenchError(f"{' '.join(argv[2:])} failed: {(measured.stdout + measured.stderr).strip()[-600:]}")
    return round(measured.seconds, 1)


def run(
    settings: Settings,
    env: dict[str, str],
    *,
    events: int,
    backfill_events: int,
    backfill_days: int = 7,
    region: str | None = None,
) -> dict:
    reset(settings, dagster=True)
    region = region or settings.regions[0]
    today = datetime.now(UTC).date()
    big_day = today - timedelta(days=backfill_days + 3)
    _timed(txmon_argv("dagster-setup"), env)  # the tables, empty: the day's events are all new to the state
    started = time.monotonic()
    written = load_day(settings, big_day, region, events, partition=0)
    load_seconds = round(time.monotonic() - started, 1)
    with_checks = _timed(txmon_argv("materialize", "--date", big_day.isoformat(), "--region", region), env)
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        settled = conn.execute(
            "SELECT sum(transaction_count), sum(settled_volume) FROM reporting.daily_settlements "
            "WHERE settlement_date = %s AND region = %s",
            (big_day, region),
        ).fetchone()

    first = big_day + timedelta(days=1)
    days = [first + timedelta(days=i) for i in range(backfill_days)]
    started = time.monotonic()
    backfill_rows = sum(
        load_day(settings, day, r, backfill_events, partition=1 + i)
        for day in days
        for i, r in enumerate(settings.regions)
    )
    backfill_load_seconds = round(time.monotonic() - started, 1)
    backfill_seconds = _timed(txmon_argv("backfill", "--from", days[0].isoformat(), "--to", days[-1].isoformat()), env)
    return {
        "region_day": {
            "date": big_day.isoformat(),
            "region": region,
            "events": written,
            "transactions": transactions_for(events),
            "events_per_transaction": round(written / transactions_for(events), 4),
            "generate_seconds": load_seconds,
            "materialize_with_checks_seconds": with_checks,
            "transactions_settled_count": int(settled[0] or 0),
            "published": settled[0] is not None,
        },
        "backfill": {
            "days": backfill_days,
            "regions": len(settings.regions),
            "partitions": backfill_days * len(settings.regions),
            "events_per_partition": backfill_events,
            "events": backfill_rows,
            "transactions": transactions_for(backfill_events) * backfill_days * len(settings.regions),
            "generate_seconds": backfill_load_seconds,
            "seconds": backfill_seconds,
        },
    }
