"""The data-quality checks of each checked table, per region x day, in one place."""
# - Great Expectations suites (expectations/): the contract's rules on staging and the marts.
# - Reconciliations, the ones auditors ask for, computed straight from staging, not from the dbt models they check: the
#   settlements equal a direct aggregate of the latest events; every suspicious transaction exists in staging, and every
#   staging transaction that the rules make suspicious is in the mart; each event identity (transaction_id, status) is
#   stored once; every consumed Kafka offset is landed, a duplicate or quarantined, and the stored positions belong to
#   the topic as it is now.
#
# Orchestration runs them as Dagster asset checks; the write-audit-publish step (txmon/quality/publication.py) publishes
# a mart partition only when all of its blocking checks passed.

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import psycopg

from expectations import validate
from ingestion import positions as position_checks
from txmon.core import fx
from txmon.core import kafka as kafka_clients
from txmon.core.checks import CheckOutcome, sampled
from txmon.core.db import connect
from txmon.core.settings import Role, Settings

# Each transaction with an event in the slice (the day as a half-open range on event_time, bounds given as values so
# PostgreSQL reads only the partitions they cover), as landed before `as_of` (the run clock of the build being checked:
# the check sees what the build saw), at its latest event (the contract's rule: greatest event_time, then the later
# lifecycle state, then the later offset), looked for up to the lifecycle window after the day; kept when that latest
# event is in the slice. ``events`` also holds the transaction's events up to the window before the day (for the
# sticky fraud flag). A transaction's events on other days are found through its identities (staging.event_identities:
# (transaction_id, status) -> event_time), not by reading every day partition of the window.
#
# Three scopes:
# - whole: the whole slice, a scan of its day, the other days' identities joined as the planner sees fit (for a slice
#   as large as its window, e.g. a 10M-event day: one hashed pass);
# - whole_by_key: the whole slice, its other days found by one identity probe per transaction (for a slice small
#   against its window, e.g. a day next to a much larger one: the planner would read every identity of the window);
#   whole_scope() chooses between the two from the planner's own row estimates;
# - since: after a publication, only the transactions with an event landed since it anywhere in the lifecycle window
#   (the others, and their events, were checked by that publication's refresh): what landed is read through the BRIN
#   index on ingested_at and every other lookup is a probe by key, so the cost follows what landed, not the size of the
#   day.
LATEST_IN_SLICE = """
WITH {candidates}events AS (
    SELECT t.transaction_id, t.region, t.currency, t.status, t.amount, t.event_time, t."offset", t.fraud_flag
    FROM {day_events}
    UNION ALL
    SELECT t.transaction_id, t.region, t.currency, t.status, t.amount, t.event_time, t."offset", t.fraud_flag
    FROM ({elsewhere}) AS i
    JOIN staging.transactions AS t
      ON t.transaction_id = i.transaction_id AND t.status = i.status AND t.event_time = i.event_time
    WHERE t.event_time >= %(history_start)s AND t.event_time < %(window_end)s AND t.ingested_at < %(as_of)s
      AND (t.event_time < %(day_start)s OR t.event_time >= %(day_end)s)
), latest AS (
    SELECT DISTINCT ON (e.transaction_id COLLATE "C")
           e.transaction_id, e.region, e.currency, e.status, e.amount, e.event_time
    FROM events AS e
    WHERE e.event_time >= %(day_start)s
    ORDER BY e.transaction_id COLLATE "C", e.event_time DESC,
             CASE e.status WHEN 'pending' THEN 0 WHEN 'reversed' THEN 2 ELSE 1 END DESC, e."offset" DESC
)
"""
# The slice's transactions as a subquery the planner can estimate (a semi-join: hashed for a large slice, probes for a
# small one).
IN_SLICE = """transaction_id IN (
        SELECT transaction_id FROM staging.transactions
        WHERE event_time >= %(day_start)s AND event_time < %(day_end)s AND region = %(region)s
          AND ingested_at < %(as_of)s)"""
OTHER_DAYS = """i.event_time >= %(history_start)s AND i.event_time < %(window_end)s
          AND (i.event_time < %(day_start)s OR i.event_time >= %(day_end)s)"""
WHOLE_SLICE = {
    "candidates": "",
    # the slice's own events, and the day's events of its transactions in other regions (a semi-join over those few)
    "day_events": """(
        SELECT * FROM staging.transactions
        WHERE event_time >= %(day_start)s AND event_time < %(day_end)s AND region = %(region)s
          AND ingested_at < %(as_of)s
        UNION ALL
        SELECT * FROM staging.transactions
        WHERE event_time >= %(day_start)s AND event_time < %(day_end)s AND region <> %(region)s
          AND ingested_at < %(as_of)s AND """  # noqa: S608 (constant text, values bound as parameters)
    + IN_SLICE
    + """
    ) AS t""",
    "elsewhere": """SELECT i.transaction_id, i.status, i.event_time FROM staging.event_identities AS i
        WHERE """  # noqa: S608 (constant text, values bound as parameters)
    + OTHER_DAYS
    + """
          AND i."""
    + IN_SLICE
    # planned on its own: the identities of the slice's transactions first, then their events (joined the other way
    # round, the planner probes the slice once for every event of the window)
    + """
        OFFSET 0""",
}
# The candidates: the slice's own events landed since, and the transactions of the slice with an event landed since
# elsewhere in the window (those few found by hashing the slice's transactions: asked per transaction of the day, the
# planner, which cannot estimate how many there are, probed every one of them into every day of the window; 1.8 ->
# 0.6 s for 20 s of one region's landing at 10,000 tx/s).
LANDED_SINCE = {
    "candidates": """candidates AS MATERIALIZED (
    SELECT recent.transaction_id FROM staging.transactions AS recent
    WHERE recent.event_time >= %(day_start)s AND recent.event_time < %(day_end)s AND recent.region = %(region)s
      AND recent.ingested_at >= %(since)s AND recent.ingested_at < %(as_of)s
    UNION
    SELECT other.transaction_id FROM (
        SELECT transaction_id FROM staging.transactions
        WHERE event_time >= %(history_start)s AND event_time < %(window_end)s
          AND ingested_at >= %(since)s AND ingested_at < %(as_of)s
          AND NOT (event_time >= %(day_start)s AND event_time < %(day_end)s AND region = %(region)s)
        OFFSET 0
    ) AS other
    WHERE other."""  # noqa: S608 (constant text, values bound as parameters)
    + IN_SLICE
    + """
), """,
    "day_events": """candidates AS c
    CROSS JOIN LATERAL (
        SELECT * FROM staging.transactions
        WHERE transaction_id = c.transaction_id AND event_time >= %(day_start)s AND event_time < %(day_end)s
          AND ingested_at < %(as_of)s
        OFFSET 0
    ) AS t""",
    "elsewhere": """SELECT i.transaction_id, i.status, i.event_time FROM candidates AS c
        CROSS JOIN LATERAL ("""  # noqa: S608 (constant text, values bound as parameters)
    + """
            SELECT * FROM staging.event_identities AS i
            WHERE i.transaction_id = c.transaction_id AND """
    + OTHER_DAYS
    + """
            OFFSET 0
        ) AS i""",
}
# The candidates in key order: their identity probes then walk the index from one page to the next instead of jumping
# about it (156,250 probes of a 15M-identity index: 2.5 -> 2.3 s for the whole recount).
WHOLE_BY_KEY = {
    "candidates": """candidates AS MATERIALIZED (
    SELECT DISTINCT transaction_id FROM staging.transactions
    WHERE event_time >= %(day_start)s AND event_time < %(day_end)s AND region = %(region)s AND ingested_at < %(as_of)s
    ORDER BY transaction_id
), """,
    "day_events": WHOLE_SLICE["day_events"],
    "elsewhere": LANDED_SINCE["elsewhere"],
}
SCOPES = {"whole": WHOLE_SLICE, "whole_by_key": WHOLE_BY_KEY, "since": LANDED_SINCE}
# One identity probe costs about as much as reading this many identities in a scan (22 us against about 0.6 us,
# measured on a 156,000-transaction day next to a 10M-event one).
PROBE_COST_IN_SCANNED_ROWS = 20
SLICE_ROWS = """SELECT 1 FROM staging.transactions
WHERE event_time >= %(day_start)s AND event_time < %(day_end)s AND region = %(region)s"""
WINDOW_IDENTITIES = """SELECT 1 FROM staging.event_identities AS i WHERE """ + OTHER_DAYS  # noqa: S608 (constant)
SLICE_ROWS_SINCE = SLICE_ROWS + " AND ingested_at >= %(since)s"
DAY_IDENTITIES = """SELECT 1 FROM staging.event_identities
WHERE event_time >= %(day_start)s AND event_time < %(day_end)s"""
# The suspicious-activity rule on a latest state, given the transactions `flagged` by the fraud screen: over the
# threshold in USD at the day's rate of its currency (looked up in the bound arrays, not joined: a join is planned per
# row; NULL without a rate, so only the flag can make it suspicious), or flagged (hashed, not probed per row).
IS_SUSPICIOUS = """(
    round(latest.amount * (%(rates)s::numeric[])[array_position(%(currencies)s::text[], latest.currency)], 4)
        > %(threshold)s
    OR latest.transaction_id IN (SELECT transaction_id FROM flagged)
)"""
# The latest states that fall in the slice (a transaction's latest event may be on a later day).
LATEST_HERE = "latest.event_time >= %(day_start)s AND latest.event_time < %(day_end)s AND latest.region = %(region)s"
# The whole slice recounted once for both recounting checks (SliceRecount): per currency, the settlements and the
# transactions the suspicious-activity rules select. The rules: latest state over the threshold in USD (the FX rate of
# the day, from the seed), or any event of the transaction flagged by the fraud screen (in the slice, or up to the
# lifecycle window before it, in any region; the window's flagged events are few and indexed).
RECOUNT_RULES = """
, flagged AS (
    SELECT f.transaction_id FROM staging.transactions AS f
    WHERE f.fraud_flag AND f.event_time >= %(history_start)s AND f.event_time < %(day_end)s
      AND (f.event_time < %(day_start)s OR f.region = %(region)s) AND f.ingested_at < %(as_of)s
)
SELECT latest.currency, count(*), count(*) FILTER (WHERE latest.status = 'settled'),
       coalesce(sum(latest.amount) FILTER (WHERE latest.status = 'settled'), 0),
       coalesce(array_agg(latest.transaction_id) FILTER (WHERE IS_SUSPICIOUS), '{}')
FROM latest
WHERE LATEST_HERE
GROUP BY latest.currency
""".replace("IS_SUSPICIOUS", IS_SUSPICIOUS).replace("LATEST_HERE", LATEST_HERE)
RECOUNT_FROM_STAGING = {
    scope: LATEST_IN_SLICE.format(**SCOPES[scope]) + RECOUNT_RULES for scope in ("whole", "whole_by_key")
}
# After a publication, the suspicious-activity rules on what landed since (the settlements, an aggregate, are
# recounted whole): the same rules, the flagged events among the candidates' own.
SUSPICIOUS_RULES = """
, flagged AS MATERIALIZED (
    SELECT e.transaction_id
    FROM events AS e
    WHERE e.fraud_flag AND e.event_time < %(day_end)s AND (e.event_time < %(day_start)s OR e.region = %(region)s)
    GROUP BY e.transaction_id
)
SELECT latest.transaction_id
FROM latest
WHERE LATEST_HERE AND IS_SUSPICIOUS
""".replace("IS_SUSPICIOUS", IS_SUSPICIOUS).replace("LATEST_HERE", LATEST_HERE)
SUSPICIOUS_SINCE = (LATEST_IN_SLICE + SUSPICIOUS_RULES).format(**LANDED_SINCE)
# Each event of the slice is the one its identity (transaction_id, status) points at. Two ways to find its identities:
# - day: the identities of the slice's day (a BRIN range of staging.event_identities: an identity carries its event's
#   time), hashed against the slice; an event matched there by none (normally none) is probed by key, so an identity
#   that points at another day's copy still counts as a second copy, not as a missing identity;
# - by_key: one probe per event (for a slice small against its day: what landed since a publication).
# identities_scope() chooses from the planner's estimates. 250,000 events of a 750,000-event day next to 15M
# identities: 2.9-3.2 s by probes, 1.0 s by the day's identities.
IDENTITIES_OF_SLICE = """
SELECT count(*),
       count(*) FILTER (WHERE i.transaction_id IS NULL),
       count(*) FILTER (WHERE i.transaction_id IS NOT NULL
                          AND (i.topic, i."partition", i."offset") <> (t.topic, t."partition", t."offset")),
       (array_agg(t.transaction_id) FILTER (
            WHERE (i.topic, i."partition", i."offset") IS DISTINCT FROM (t.topic, t."partition", t."offset"))
       )[1:%(sample)s]
FROM staging.transactions AS t
{identities}
WHERE t.event_time >= %(day_start)s AND t.event_time < %(day_end)s AND t.region = %(region)s
  AND t.ingested_at >= %(since)s
"""
PROBED_IDENTITY = """LEFT JOIN LATERAL (
    SELECT * FROM staging.event_identities AS i WHERE {unmatched}i.transaction_id = t.transaction_id
      AND i.status = t.status
    OFFSET 0
) AS {alias} ON true"""
IDENTITIES = {
    "day": """LEFT JOIN staging.event_identities AS d
  ON d.transaction_id = t.transaction_id AND d.status = t.status
 AND d.event_time >= %(day_start)s AND d.event_time < %(day_end)s
"""
    + PROBED_IDENTITY.format(unmatched="d.transaction_id IS NULL AND ", alias="p")
    + """
CROSS JOIN LATERAL (SELECT coalesce(d.transaction_id, p.transaction_id) AS transaction_id,
                           coalesce(d.topic, p.topic) AS topic, coalesce(d."partition", p."partition") AS "partition",
                           coalesce(d."offset", p."offset") AS "offset") AS i""",
    "by_key": PROBED_IDENTITY.format(unmatched="", alias="i"),
}
IDENTITIES_OF_SLICE_BY = {scope: IDENTITIES_OF_SLICE.format(identities=join) for scope, join in IDENTITIES.items()}
OFFSETS_ACCOUNTED = """
SELECT (SELECT count(*) FROM staging.transactions
        WHERE topic = %(t)s AND "partition" = %(p)s AND "offset" BETWEEN %(lo)s AND %(hi)s)
     + (SELECT count(*) FROM staging.duplicate_transactions
        WHERE topic = %(t)s AND "partition" = %(p)s AND "offset" BETWEEN %(lo)s AND %(hi)s)
     + (SELECT count(*) FROM staging.rejected_transactions
        WHERE topic = %(t)s AND "partition" = %(p)s AND "offset" BETWEEN %(lo)s AND %(hi)s)
"""


def _estimated_rows(conn: psycopg.Connection, query: str, params: dict) -> float:
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()[0]
    return float(plan[0]["Plan"]["Plan Rows"])


def whole_scope(conn: psycopg.Connection, params: dict) -> str:
    """How a whole-slice recount finds its transactions' events on other days: by one identity probe per
    event of the slice when that costs less than reading the window's identities (the planner's estimates),
    else as the planner sees fit."""
    return "whole_by_key" if _probes_cost_less(conn, SLICE_ROWS, WINDOW_IDENTITIES, params) else "whole"


def _probes_cost_less(conn: psycopg.Connection, probing: str, scanned: str, params: dict) -> bool:
    """Whether one probe per row of `probing` costs less than reading the rows of `scanned` (planner estimates)."""
    probes = _estimated_rows(conn, probing, params) * PROBE_COST_IN_SCANNED_ROWS
    return probes < _estimated_rows(conn, scanned, params)


class SliceRecount:
    """The whole slice recounted from staging (RECOUNT_FROM_STAGING), as landed before a build's run clock, once:
    the settlements check and suspicious_complete read the same latest states. Computed by the first check that
    asks; one that asks meanwhile waits for it. One per check phase of a refresh (never reused after it: staging
    may change)."""

    def __init__(self, settings: Settings, day: date, region: str, as_of: datetime | None = None):
        self.settings, self.day, self.region, self.as_of = settings, day, region, as_of
        self._lock = threading.Lock()
        self._rows: list[tuple] | None = None

    def _counted(self) -> list[tuple]:
        with self._lock:
            if self._rows is None:
                params = suspicious_params(self.settings, self.day, self.region, self.as_of)
                dsn = self.settings.dsn_for_region(self.region, Role.TRANSFORM)
                with connect(dsn, autocommit=True, purpose="check") as conn:
                    self._rows = conn.execute(RECOUNT_FROM_STAGING[whole_scope(conn, params)], params).fetchall()
            return self._rows

    def settlements(self) -> dict[str, tuple[int, int, Decimal]]:
        """Per currency: transactions, settled transactions, settled volume."""
        return {currency: (n, s, v) for currency, n, s, v, _ in self._counted()}

    def suspicious(self) -> set[str]:
        """The transactions the suspicious-activity rules select."""
        return {tx for *_, ids in self._counted() for tx in ids}


def identities_scope(conn: psycopg.Connection, params: dict) -> str:
    """How staging_events_unique finds the slice's identities: one probe per event of the slice (landed since) when
    that costs less than reading the day's identities (the planner's estimates), else the day's."""
    return "by_key" if _probes_cost_less(conn, SLICE_ROWS_SINCE, DAY_IDENTITIES, params) else "day"


def settlements_reconcile(
    settings: Settings,
    day: date,
    region: str,
    as_of: datetime | None = None,
    since: datetime | None = None,
    recount: SliceRecount | None = None,
) -> CheckOutcome:
    """marts.daily_settlements for the slice equals a direct aggregate of staging (as landed before
    as_of, the build's run clock), to the cent."""
    params = {"day": day, "region": region}
    expected = (recount or SliceRecount(settings, day, region, as_of)).settlements()
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
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


def slice_bounds(
    settings: Settings, day: date, region: str, as_of: datetime | None = None, since: datetime | None = None
) -> dict:
    """The values LATEST_IN_SLICE is bounded by: the day, the lifecycle window around it, the build's clock."""
    start = datetime.combine(day, time(), UTC)
    window = timedelta(days=settings.lifecycle_window_days)
    return {
        "region": region,
        "day_start": start,
        "day_end": start + timedelta(days=1),
        "history_start": start - window,
        "window_end": start + timedelta(days=1) + window,
        "as_of": _bound(as_of),
        "since": _bound(since, "-infinity"),
    }


def _bound(at: datetime | None, default: str = "infinity") -> datetime | str:
    return at if at is not None else default


def _row(row: tuple | None) -> dict | None:
    return None if row is None else {"count": row[0], "settled": row[1], "volume": str(Decimal(row[2]))}


def suspicious_in_staging(
    settings: Settings, day: date, region: str, as_of: datetime | None = None, since: datetime | None = None
) -> CheckOutcome:
    """Every row of marts.suspicious_activity for the slice (rebuilt since `since`) is an event landed in staging."""
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
        rows = conn.execute(
            """SELECT transaction_id, event_time, amount, currency FROM marts.suspicious_activity
               WHERE event_date = %s AND region = %s AND refreshed_at >= %s""",
            (day, region, _bound(since, "-infinity")),
        ).fetchall()
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
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
        metadata={
            "suspicious_transactions": len(rows),
            "not_in_staging": len(missing),
            **sampled(settings, "sample_not_in_staging", missing),
        },
    )


def suspicious_params(
    settings: Settings, day: date, region: str, as_of: datetime | None = None, since: datetime | None = None
) -> dict:
    """What the suspicious-activity recounts are bound by: the slice's bounds, the region's threshold, the FX rates."""
    rates = {}
    for currency in settings.currencies:
        try:
            rates[currency] = fx.usd_per_unit(currency, day)
        except KeyError:
            continue  # no rate: the mart cannot convert it either; only the fraud flag can make it suspicious
    return {
        **slice_bounds(settings, day, region, as_of, since),
        "threshold": settings.suspicious_threshold_usd_by_region.get(region, settings.suspicious_threshold_usd),
        "currencies": list(rates),
        "rates": list(rates.values()),
    }


def suspicious_complete(
    settings: Settings,
    day: date,
    region: str,
    as_of: datetime | None = None,
    since: datetime | None = None,
    recount: SliceRecount | None = None,
) -> CheckOutcome:
    """Every staging transaction of the slice that the rules make suspicious is in marts.suspicious_activity."""
    if since is None:
        expected = (recount or SliceRecount(settings, day, region, as_of)).suspicious()
    else:
        params = suspicious_params(settings, day, region, as_of, since)
        with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
            expected = {tx for (tx,) in conn.execute(SUSPICIOUS_SINCE, params)}
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
        in_mart = {
            tx
            for (tx,) in conn.execute(
                "SELECT transaction_id FROM marts.suspicious_activity WHERE event_date = %s AND region = %s",
                (day, region),
            )
        }
    missing = sorted(expected - in_mart)
    return CheckOutcome(
        name="suspicious_complete",
        passed=not missing,
        summary=f"{len(expected)} suspicious by the rules in staging, {len(missing)} missing from the mart",
        metadata={
            "suspicious_in_staging": len(expected),
            "missing_from_mart": len(missing),
            **sampled(settings, "sample_missing_from_mart", missing),
        },
    )


def staging_events_unique(
    settings: Settings, day: date, region: str, as_of: datetime | None = None, since: datetime | None = None
) -> CheckOutcome:
    """Each event identity (transaction_id, status) of the slice is stored once: every row of the slice
    is the one event its identity row in staging.event_identities points at."""
    params = {**slice_bounds(settings, day, region, since=since), "sample": settings.metadata_sample_size}
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
        query = IDENTITIES_OF_SLICE_BY[identities_scope(conn, params)]
        events, without, second, sample = conn.execute(query, params).fetchone()
    return CheckOutcome(
        name="staging_events_unique",
        passed=without == 0 and second == 0,
        summary=f"{events} events, {without} without an identity, {second} second copies of an identity",
        metadata={
            "events": events,
            "without_identity": without,
            "second_copies": second,
            **sampled(settings, "sample_transaction_ids", sample or []),
        },
    )


def position_problems(settings: Settings) -> list[str]:
    """What is wrong with the stored positions against the topic as it is now (ingestion/positions.py)."""
    stored: dict[int, int] = {}
    sources: set = set()
    for dsn in settings.databases():
        with connect(settings.as_role(dsn, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
            for p, nxt, cluster_id, topic_id in conn.execute(
                'SELECT "partition", next_offset, cluster_id, topic_id FROM staging.kafka_offsets WHERE topic = %s',
                (settings.topic,),
            ):
                stored[p] = min(stored.get(p, nxt), nxt)
                sources.add((cluster_id, topic_id))
    if not stored:
        return []
    consumer, admin = kafka_clients.consumer(settings), kafka_clients.admin(settings)
    try:
        return position_checks.inspect(consumer, admin, settings.topic, stored, sources)[1]
    finally:
        consumer.close()


def kafka_offsets_accounted(settings: Settings) -> CheckOutcome:
    """Every offset consumed since the last audit is landed, a duplicate or quarantined, in exactly
    one database. Offsets every database has consumed are counted; the audited position advances
    only when the counts match."""
    dsns = [settings.as_role(dsn, Role.TRANSFORM) for dsn in settings.databases()]
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
    with connect(settings.home_dsn(Role.TRANSFORM), purpose="check") as audit:
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
    problems = position_problems(settings)
    summary = f"{audited} offsets audited" + (f", {len(gaps)} partitions do not add up" if gaps else "")
    if problems:
        summary += f"; positions do not match the topic: {problems[0]}"
    return CheckOutcome(
        name="kafka_offsets_accounted",
        passed=not gaps and not problems,
        summary=summary,
        metadata={"offsets_audited": audited, "partitions_not_adding_up": gaps, "position_problems": problems},
    )


# Which table each check guards is in that table's dbt yml (meta.txmon.checks); GX suites are named
# gx_<table>. What each check asserts, as the Dagster UI shows it:
DESCRIPTIONS = {
    "gx_staging_transactions": "GX suite: not-null keys, amount > 0, currency and region in the configured sets, "
    "event_time not beyond the allowed clock skew in the future.",
    "gx_suspicious_activity": "GX suite: not-null columns, one row per transaction, positive amounts, "
    "configured currencies and regions.",
    "gx_daily_settlements": "GX suite: one row per grain, non-negative counts and volumes, "
    "settled_count <= transaction_count.",
    "suspicious_in_staging": "Reconciliation: every suspicious transaction is an event landed in staging.",
    "suspicious_complete": "Reconciliation: every staging transaction whose latest state is over the threshold "
    "or that the fraud screen flagged is in the mart (the rules recounted from staging).",
    "staging_events_unique": "Reconciliation: each event identity (transaction_id, status) is stored once, "
    "whatever its time or amount (every row is the one its identity points at).",
    "settlements_reconcile_with_staging": "Reconciliation: counts and settled volume per currency equal a direct "
    "aggregate of the latest events in staging, to the cent.",
}
RECONCILIATIONS = {
    "suspicious_in_staging": suspicious_in_staging,
    "suspicious_complete": suspicious_complete,
    "settlements_reconcile_with_staging": settlements_reconcile,
    "staging_events_unique": staging_events_unique,
}


# The reconciliations that read SliceRecount's latest states.
RECOUNTED = ("suspicious_complete", "settlements_reconcile_with_staging")


def run_check(
    settings: Settings,
    name: str,
    day: date,
    region: str,
    as_of: datetime | None = None,
    since: datetime | None = None,
    recount: SliceRecount | None = None,
) -> CheckOutcome:
    """One named check on one region x day partition, of a build whose run clock was `as_of`; with
    `since` (the staging_as_of of the partition's last publication), only what landed or was rebuilt
    after it (the rest passed every check then). The settlements, an aggregate, are checked whole.
    The checks of one refresh share `recount`."""
    if name.startswith("gx_"):
        return validate(settings, name.removeprefix("gx_"), day, region, since=since)
    if name in RECOUNTED:
        return RECONCILIATIONS[name](settings, day, region, as_of, since, recount=recount)
    if name in RECONCILIATIONS:
        return RECONCILIATIONS[name](settings, day, region, as_of, since)
    raise ValueError(f"no check {name!r}")
