"""Ingest throughput: `txmon ingest --until-idle` over a preloaded topic, against two baselines."""
# - txmon: N generated events preloaded on the topic (the generator's mix: events per transaction measured on them),
#   then `txmon ingest --until-idle` as its own process; events/s (and transactions/s at that mix) from its first poll
#   to its last commit, and its peak resident memory.
# - COPY limit: the rows txmon wrote per event, already serialised (COPY text), COPYed in one transaction into identical
#   empty tables (same columns, partitions, keys and indexes): the events into a copy of staging.transactions and their
#   identities into a copy of staging.event_identities. No parsing, no validation, no Kafka: what PostgreSQL itself can
#   take on this machine. Target: txmon >= COPY_TARGET of it. The COPY of the events into the events table alone is
#   measured beside it, in the same run.
# - naive: the consumer people write first: per message parse and validate (the same validator), then one INSERT ... ON
#   CONFLICT DO NOTHING and one commit, on a sample of the same messages.

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from bench.common import BenchError, Measured, reset, run_measured, txmon_argv
from contracts.transaction import InvalidEvent
from ingestion.consumer import produced_at
from ingestion.sink import COLUMN_LIST as COLS
from ingestion.sink import IDENTITY_COLUMNS, LANDING_COLUMNS
from ingestion.validate import validator_for
from txmon.core import kafka as kafka_clients
from txmon.core.db import connect
from txmon.core.settings import KafkaUser, Settings
from txmon.devtools.generate import PaymentGenerator
from txmon.devtools.produce import send

COPY_TARGET = 0.8


def preload(settings: Settings, events: int, *, seed: int = 20261126, bad_rate: float = 0.001) -> dict:
    """Generate ``events`` payments (a 10,000 tx/s simulated clock) and put them on the topic."""
    if events <= 0:
        raise BenchError(f"nothing to preload: {events} events")
    gen = PaymentGenerator(settings, tps=10_000, seed=seed, bad_rate=bad_rate)
    report = send(settings, gen.events(events))
    if report.failed:
        raise BenchError(f"preloading the topic failed: {report.first_error}")
    return {
        "events": report.sent,
        "transactions": report.transactions,
        "events_per_transaction": round(report.sent / report.transactions, 4),
        "seconds": round(report.seconds, 1),
    }


def ingest_until_idle(env: dict[str, str], *args: str) -> tuple[dict, Measured]:
    """One `txmon ingest --until-idle` process: its JSON summary and its resource use."""
    measured = run_measured(txmon_argv("ingest", "--until-idle", *args), env)
    if measured.returncode != 0:
        raise BenchError(f"txmon ingest failed ({measured.returncode}): {measured.stderr.strip()[-400:]}")
    return json.loads(measured.stdout.strip().splitlines()[-1]), measured


def identical_table(conn, schema: str) -> str:
    """An empty copy of staging.transactions (columns, defaults, keys, indexes, the same day partitions), with an
    empty copy of staging.event_identities (keys, indexes) beside it as ``{schema}.event_identities``."""
    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"CREATE TABLE {schema}.transactions (LIKE staging.transactions INCLUDING ALL) PARTITION BY RANGE (event_time)"
    )
    bounds = conn.execute(
        """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'staging.transactions'::regclass"""
    ).fetchall()
    for name, bound in bounds:
        conn.execute(f"CREATE TABLE {schema}.{name} PARTITION OF {schema}.transactions {bound}")
    conn.execute(f"CREATE TABLE {schema}.event_identities (LIKE staging.event_identities INCLUDING ALL)")
    return f"{schema}.transactions"


def _dump(conn, query: str, path: Path) -> int:
    """``query``'s rows serialised (COPY text: one line a row) into ``path``; their number."""
    rows = 0
    with open(path, "wb") as fh, conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT") as copy:
        for chunk in copy:
            fh.write(chunk)
            rows += bytes(chunk).count(b"\n")
    return rows


def _timed_copy(conn, loads: list[tuple[str, str, Path]]) -> float:
    """COPY each (table, columns, file) in one transaction, after a checkpoint; the seconds of the transaction."""
    conn.execute("CHECKPOINT")
    started = time.monotonic()
    with conn.transaction():
        for table, columns, path in loads:
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy, open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    copy.write(chunk)
    return time.monotonic() - started


def copy_limit(settings: Settings) -> tuple[dict, dict]:
    """The landed events and their identities, serialised beforehand, COPYed into identical empty tables: both
    tables in one transaction (what txmon writes per event), then, into fresh tables, the events table alone."""
    with (
        connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn,
        tempfile.TemporaryDirectory(dir=settings.state_dir) as tmp,
    ):
        events_file, identities_file = Path(tmp) / "events.copy", Path(tmp) / "identities.copy"
        rows = _dump(conn, f"SELECT {COLS} FROM staging.transactions", events_file)  # noqa: S608
        identities = _dump(conn, f"SELECT {IDENTITY_COLUMNS} FROM staging.event_identities", identities_file)  # noqa: S608
        if not rows:
            raise BenchError("the COPY limit has no rows to copy: txmon landed nothing")
        sizes = events_file.stat().st_size, identities_file.stat().st_size
        target = identical_table(conn, "bench_limit")
        both = _timed_copy(
            conn,
            [(target, COLS, events_file), ("bench_limit.event_identities", IDENTITY_COLUMNS, identities_file)],
        )
        target = identical_table(conn, "bench_limit")
        alone = _timed_copy(conn, [(target, COLS, events_file)])
        conn.execute("DROP SCHEMA bench_limit CASCADE")
    return (
        {
            "tables": ["staging.transactions", "staging.event_identities"],
            "rows": rows,
            "identities": identities,
            "seconds": round(both, 3),
            "rows_per_second": round(rows / both, 1),
            "serialised_mib": round(sum(sizes) / 2**20, 1),
        },
        {
            "tables": ["staging.transactions"],
            "rows": rows,
            "seconds": round(alone, 3),
            "rows_per_second": round(rows / alone, 1),
            "serialised_mib": round(sizes[0] / 2**20, 1),
        },
    )


def naive(settings: Settings, sample: int) -> dict:
    """Per message: validate, INSERT one row, commit. On the first ``sample`` messages of the topic."""
    validator = validator_for(settings)
    # In ingest's group, which its ACLs allow (librdkafka looks the group's coordinator up): it joins nothing, commits
    # nothing, as the partitions are assigned.
    consumer = kafka_clients.consumer(settings, user=KafkaUser.INGEST)
    partitions = sorted(consumer.list_topics(settings.topic, timeout=10).topics[settings.topic].partitions)
    consumer.assign([TopicPartition(settings.topic, p, OFFSET_BEGINNING) for p in partitions])
    placeholders = ", ".join(["%s"] * len(LANDING_COLUMNS))
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        target = identical_table(conn, "bench_naive")
        insert = f"INSERT INTO {target} ({COLS}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"  # noqa: S608
        seen = inserted = 0
        started = None
        idle_since = time.monotonic()
        while seen < sample and time.monotonic() - idle_since < 30:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            idle_since = time.monotonic()
            started = started or time.monotonic()
            seen += 1
            try:
                e = validator.parse(msg.value())
            except InvalidEvent:
                continue  # a real one would quarantine it; the sample leaves it out
            with conn.transaction():
                conn.execute(
                    insert,
                    (
                        e.transaction_id,
                        e.status,
                        e.event_time,
                        e.account_id,
                        e.counterparty_id,
                        e.amount,
                        e.currency,
                        e.region,
                        e.fraud_flag,
                        produced_at(msg),
                        settings.topic,
                        msg.partition(),
                        msg.offset(),
                        msg.value().decode(),
                    ),
                )
            inserted += 1
        seconds = time.monotonic() - (started or time.monotonic())
        conn.execute("DROP SCHEMA bench_naive CASCADE")
    consumer.close()
    return {
        "messages": seen,
        "inserted": inserted,
        "seconds": round(seconds, 3),
        "events_per_second": round(seen / seconds, 1) if seconds else None,
    }


def run(settings: Settings, env: dict[str, str], *, events: int, naive_sample: int) -> dict:
    reset(settings)
    loaded = preload(settings, events)
    summary, measured = ingest_until_idle(env)
    if summary["consumed"] != loaded["events"]:
        raise BenchError(f"txmon ingest consumed {summary['consumed']} of {loaded['events']} preloaded events")
    limit, events_only = copy_limit(settings)
    baseline = naive(settings, naive_sample)
    if not baseline["messages"]:
        raise BenchError("the naive consumer read nothing from the topic")
    rate = summary["events_per_second"]
    if not rate:
        raise BenchError(f"txmon ingest measured no rate: {summary}")
    ratio = round(rate / limit["rows_per_second"], 3)
    return {
        "preload": loaded,
        "txmon": {
            "events": summary["consumed"],
            "transactions_per_second": round(rate / loaded["events_per_transaction"], 1),
            "landed": summary["landed"],
            "duplicates": summary["duplicates"],
            "quarantined": summary["quarantined"],
            "batches": summary["batches"],
            "seconds": summary["seconds_first_poll_to_last_commit"],
            "events_per_second": rate,
            "process_seconds": round(measured.seconds, 1),
            "peak_rss_mib": round(measured.max_rss_mib, 1),
        },
        "copy_limit": limit,
        "copy_limit_events_only": events_only,
        "naive": baseline,
        "ratio_to_copy_limit": ratio,
        "ratio_to_copy_limit_target": COPY_TARGET,
        "ratio_to_copy_limit_met": ratio >= COPY_TARGET,
        "ratio_to_copy_limit_events_only": round(rate / events_only["rows_per_second"], 3),
        "ratio_to_naive": round(rate / baseline["events_per_second"], 1) if baseline["events_per_second"] else None,
    }
