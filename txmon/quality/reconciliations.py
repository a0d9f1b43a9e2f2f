"""The data-quality checks that are not dbt tests, per region x day, in one place."""
# - Great Expectations suites (expectations/): the contract's rules on staging and the marts.
# - Staging's own reconciliations, the ones auditors ask for: each event identity (transaction_id, status) is stored
#   once; every consumed Kafka offset is landed, a duplicate or quarantined, and the stored positions belong to the
#   topic as it is now.
# The transformation's checks are dbt tests in the models' yml: the state against staging (reflects_latest_events), the
# suspicious-activity mart against the rule applied to the state (selected_by_rule), the settlements' control totals
# against the state (totals_match_state).
#
# Orchestration runs them as Dagster asset checks; the write-audit-publish step (txmon/quality/publication.py) publishes
# a mart partition only when all of its blocking checks passed.

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import psycopg

from expectations import validate
from ingestion import positions as position_checks
from txmon.core import kafka as kafka_clients
from txmon.core.checks import CheckOutcome, sampled
from txmon.core.db import connect
from txmon.core.settings import KafkaUser, Role, Settings

# Each event of the slice (landed since `since`) is the one its identity (transaction_id, status) points at. Two ways
# to find its identities, chosen from the planner's estimates (identities_scope) and passed as `by_day`:
# - the day's: the identities of the slice's day (a BRIN range: an identity carries its event's time), hashed against
#   the slice; an event matched there by none (normally none) is probed by key, so an identity that points at another
#   day's copy still counts as a second copy, not as a missing identity;
# - by key (`by_day` false: the day's join is planned away): one probe per event, for a slice small against its day
#   (what landed since a publication).
IDENTITIES_OF_SLICE = """
SELECT count(*),
       count(*) FILTER (WHERE i.transaction_id IS NULL),
       count(*) FILTER (WHERE i.transaction_id IS NOT NULL
                          AND (i.topic, i."partition", i."offset") <> (t.topic, t."partition", t."offset")),
       (array_agg(t.transaction_id) FILTER (
            WHERE (i.topic, i."partition", i."offset") IS DISTINCT FROM (t.topic, t."partition", t."offset"))
       )[1:%(sample)s]
FROM staging.transactions AS t
LEFT JOIN staging.event_identities AS d
  ON %(by_day)s AND d.transaction_id = t.transaction_id AND d.status = t.status
 AND d.event_time >= %(day_start)s AND d.event_time < %(day_end)s
LEFT JOIN LATERAL (
    SELECT * FROM staging.event_identities AS p
    WHERE d.transaction_id IS NULL AND p.transaction_id = t.transaction_id AND p.status = t.status
    OFFSET 0
) AS p ON true
CROSS JOIN LATERAL (SELECT coalesce(d.transaction_id, p.transaction_id) AS transaction_id,
                           coalesce(d.topic, p.topic) AS topic, coalesce(d."partition", p."partition") AS "partition",
                           coalesce(d."offset", p."offset") AS "offset") AS i
WHERE t.event_time >= %(day_start)s AND t.event_time < %(day_end)s AND t.region = %(region)s
  AND t.ingested_at >= %(since)s
"""
SLICE_ROWS_SINCE = """SELECT 1 FROM staging.transactions
WHERE event_time >= %(day_start)s AND event_time < %(day_end)s AND region = %(region)s AND ingested_at >= %(since)s"""
DAY_IDENTITIES = """SELECT 1 FROM staging.event_identities
WHERE event_time >= %(day_start)s AND event_time < %(day_end)s"""
# One identity probe costs about as much as reading this many identities in a scan (22 us against about 0.6 us).
PROBE_COST_IN_SCANNED_ROWS = 20
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


def identities_scope(conn: psycopg.Connection, params: dict) -> str:
    """How staging_events_unique finds the slice's identities: by key when one probe per event of the slice (landed
    since) costs less than reading the day's identities (the planner's estimates), else the day's."""
    probes = _estimated_rows(conn, SLICE_ROWS_SINCE, params) * PROBE_COST_IN_SCANNED_ROWS
    return "by_key" if probes < _estimated_rows(conn, DAY_IDENTITIES, params) else "day"


def slice_bounds(day: date, region: str, since: datetime | None = None) -> dict:
    """The values the slice's queries are bounded by: the day as a half-open range on event_time, what landed since."""
    start = datetime.combine(day, time(), UTC)
    return {
        "region": region,
        "day_start": start,
        "day_end": start + timedelta(days=1),
        "since": since if since is not None else "-infinity",
    }


def staging_events_unique(settings: Settings, day: date, region: str, since: datetime | None = None) -> CheckOutcome:
    """Each event identity (transaction_id, status) of the slice is stored once: every row of the slice
    is the one event its identity row in staging.event_identities points at."""
    params = {**slice_bounds(day, region, since), "sample": settings.metadata_sample_size}
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="check") as conn:
        params["by_day"] = identities_scope(conn, params) == "day"
        events, without, second, sample = conn.execute(IDENTITIES_OF_SLICE, params).fetchone()
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
    # As Dagster's Kafka user (ingest): describing the topic is all it needs here.
    consumer = kafka_clients.consumer(settings, user=KafkaUser.INGEST)
    admin = kafka_clients.admin(settings, user=KafkaUser.INGEST)
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
    "staging_events_unique": "Reconciliation: each event identity (transaction_id, status) is stored once, "
    "whatever its time or amount (every row is the one its identity points at).",
}
RECONCILIATIONS = {"staging_events_unique": staging_events_unique}


def run_check(settings: Settings, name: str, day: date, region: str, since: datetime | None = None) -> CheckOutcome:
    """One named check on one region x day partition; with `since` (the staging_as_of of the partition's last
    publication), only what landed after it (the rest passed every check then)."""
    if name.startswith("gx_"):
        return validate(settings, name.removeprefix("gx_"), day, region, since=since)
    if name in RECONCILIATIONS:
        return RECONCILIATIONS[name](settings, day, region, since)
    raise ValueError(f"no check {name!r}")
