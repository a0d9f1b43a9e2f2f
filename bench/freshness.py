"""Freshness under load: the platform live (`txmon dagster`: webserver, daemon, sensors), payments at a steady rate;
and late data: how soon the partitions of closed region-days are published once their events land."""
# The load is ``tps`` transactions/s with the generator's mix, serialised beforehand and replayed by its own process
# (bench.common, "load"); the run reports the rate acknowledged and landed in the measured window, and the replay's CPU.
# A run whose load fell below LOAD_MET_SHARE of the asked rate is "not met" whatever its latencies.
#
# Per event landed in the measured window: landing delay = ``ingested_at - produced_at`` (the statement time of the
# landing transaction minus the Kafka message timestamp, both this machine's clock). Per over-threshold transaction
# produced in the window: the delay from its first event's produce time to the moment its row was first seen in
# ``reporting.suspicious_activity`` (checked and published; polled every second). Consumer lag sampled every second. Run
# with the Dagster sensor landing (``sensor``) and with a standalone `txmon ingest` worker (``worker``, the sensor then
# only reports). A run that lands nothing, or in which no over-threshold transaction is produced, fails.
#
# Late data (``late``): the platform live and idle, events for 9 closed region-days (3 days x 3 regions) are produced at
# once; per partition, the delay from its last event landing to both of its `reporting` tables published
# (reporting.published_partitions), every check passed.

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    BenchError,
    load_result,
    percentiles,
    pregenerate,
    replay_load,
    reset,
    run_measured,
    txmon_argv,
)
from bench.cpu import CpuProfile
from ingestion.lag import consumer_lag
from txmon.core.db import connect
from txmon.core.leases import end_leases
from txmon.core.processes import terminate
from txmon.core.settings import Settings
from txmon.devtools.generate import PaymentGenerator

LANDING = """
SELECT count(*),
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - produced_at)),
       max(extract(epoch FROM ingested_at - produced_at))
FROM staging.transactions WHERE produced_at >= %s AND produced_at < %s
"""
# The reference set: every over-threshold transaction of the window as the mart has built it.
OVER_THRESHOLD_IN_WINDOW = """
SELECT m.transaction_id, min(t.produced_at)
FROM marts.suspicious_activity AS m JOIN staging.transactions AS t USING (transaction_id)
WHERE 'amount_over_threshold' = ANY(m.reasons)
GROUP BY m.transaction_id HAVING min(t.produced_at) >= %s AND min(t.produced_at) < %s
"""
# Transactions whose first landed event was produced in the window (a transaction's later events come after it).
TRANSACTIONS_LANDED = """
SELECT count(*) FROM (SELECT min(produced_at) AS first FROM staging.transactions GROUP BY transaction_id) AS t
WHERE first >= %s AND first < %s
"""
LOAD_SEED = 20261201
DRAIN_SECONDS = 30
DRAIN_LIMIT_SECONDS = 180


class _Sampler(threading.Thread):
    """Every second: the consumer lag, and which suspicious transactions are published (first seen when)."""

    def __init__(self, settings: Settings):
        super().__init__(daemon=True)
        self.settings = settings
        self.stop = threading.Event()
        self.lag: list[tuple[float, int]] = []
        self.first_seen: dict[str, datetime] = {}

    def run(self) -> None:
        with connect(self.settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
            while not self.stop.wait(1.0):
                now = datetime.now(UTC)
                try:
                    self.lag.append((time.time(), sum(consumer_lag(self.settings).values())))
                except Exception:  # a missed sample is not a failed benchmark
                    pass
                if conn.execute("SELECT to_regclass('reporting.suspicious_activity')").fetchone()[0] is None:
                    continue
                rows = conn.execute(
                    "SELECT transaction_id FROM reporting.suspicious_activity WHERE event_date >= %s",
                    (now.date() - timedelta(days=1),),
                ).fetchall()
                for (tx,) in rows:
                    self.first_seen.setdefault(tx, now)


def _wait_until_published(
    settings: Settings, sampler: _Sampler, window: tuple[datetime, datetime], earliest: float, latest: float
) -> None:
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        while time.monotonic() < latest:
            time.sleep(2)
            if time.monotonic() < earliest:
                continue
            built = conn.execute(OVER_THRESHOLD_IN_WINDOW, window).fetchall()
            if built and all(tx in sampler.first_seen for tx, _ in built):
                return


def _wait_for_sensors(settings: Settings, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    with connect(settings.dagster_dsn, autocommit=True, purpose="bench") as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT to_regclass('job_ticks')").fetchone()[0] is not None:
                names = {
                    n
                    for (n,) in conn.execute(
                        "SELECT DISTINCT (tick_body::jsonb)->>'job_name' FROM job_ticks"
                    ).fetchall()
                    if n
                }
                if {"kafka_ingestion", "marts_refresh"} <= names:
                    return
            time.sleep(2)
    raise BenchError(f"the Dagster sensors did not tick within {timeout:.0f}s (see .txmon/logs/daemon.log)")


def run(
    settings: Settings, env: dict[str, str], *, mode: str, tps: float, seconds: float, warmup: float, port: int
) -> dict:
    reset(settings, dagster=True)
    env = {**env, "TXMON_INGEST_MODE": mode}
    procs = _start_live(settings, env, port)
    sampler = _Sampler(settings)
    try:
        if mode == "worker":
            procs.append(
                subprocess.Popen(txmon_argv("ingest"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        with tempfile.TemporaryDirectory(dir=settings.state_dir) as tmp:
            stream = Path(tmp) / "load.replay"
            prepared = pregenerate(settings, stream, tps=tps, seconds=warmup + seconds, seed=LOAD_SEED)
            gen, finish = replay_load(
                stream,
                env,
                start_at=prepared["start_at"],
                window=(warmup, warmup + seconds),
                timeout=prepared["start_at"] - time.time() + warmup + seconds + 600,
            )
            procs.append(gen)
            sampler.start()
            start = prepared["start_at"]
            cpu = CpuProfile((start + warmup, start + warmup + seconds))
            sent = finish()
        if sent["failed"]:
            raise BenchError(f"the load's replay failed to send {sent['failed']} events: {sent['first_error']}")
        began = datetime.fromtimestamp(sent["started_at"], UTC)
        window = (began + timedelta(seconds=warmup), began + timedelta(seconds=warmup + seconds))
        # Drain: everything landed, then every over-threshold transaction of the window published (so the slowest
        # count in the percentiles instead of dropping out of them), for at least DRAIN_SECONDS and at most
        # DRAIN_LIMIT_SECONDS; what is still unpublished then is reported as never published.
        deadline = time.monotonic() + DRAIN_LIMIT_SECONDS
        while time.monotonic() < deadline and (not sampler.lag or sampler.lag[-1][1] > 0):
            time.sleep(1)
        _wait_until_published(settings, sampler, window, time.monotonic() + DRAIN_SECONDS, deadline)
        sampler.stop.set()
        sampler.join()
    finally:
        sampler.stop.set()
        terminate(procs, timeout=90)
        end_leases(settings)
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        n, (p50, p95, p99), worst = conn.execute(LANDING, window).fetchone()
        landed_transactions = conn.execute(TRANSACTIONS_LANDED, window).fetchone()[0]
        produced = conn.execute(OVER_THRESHOLD_IN_WINDOW, window).fetchall()
    if not sent["window_events"] or not n or not produced:
        raise BenchError(
            f"freshness {mode} measured nothing: {sent['window_events']} events acknowledged and {n} landed, "
            f"{len(produced)} over-threshold transactions built in the window (see .txmon/logs/daemon.log)"
        )
    delays = [(sampler.first_seen[tx] - at).total_seconds() for tx, at in produced if tx in sampler.first_seen]
    in_window = [lag for t, lag in sampler.lag if window[0].timestamp() <= t < window[1].timestamp()]
    return {
        "mode": mode,
        "tps": tps,
        "window_seconds": seconds,
        "warmup_seconds": warmup,
        "load": load_result(
            tps,
            seconds,
            prepared["events_per_transaction"],
            acknowledged=(sent["window_transactions"], sent["window_events"]),
            landed=(landed_transactions, n),
        ),
        "generator": generator_report(prepared, sent),
        "landing_seconds": {
            "p50": float(p50 or 0),
            "p95": float(p95 or 0),
            "p99": float(p99 or 0),
            "max": float(worst or 0),
            "n": n,
        },
        "suspicious_seconds": {**percentiles(delays), "not_seen": len(produced) - len(delays)},
        "lag_max": max(in_window, default=None),
        "cpu": cpu.result(timeout=seconds + 60),
        "lag_samples": [[round(t - window[0].timestamp(), 1), lag] for t, lag in sampler.lag],
    }


def generator_report(prepared: dict, sent: dict) -> dict:
    """The load generator: the stream it serialised beforehand, and what replaying it cost."""
    seconds = sent["seconds"]
    return {
        "transactions": prepared["transactions"],
        "events": prepared["events"],
        "serialise_seconds": prepared["serialise_seconds"],
        "file_mib": prepared["file_mib"],
        "sent": sent["sent"],
        "acknowledged": sent["acknowledged"],
        "replay_seconds": round(seconds, 1),
        "late_start_seconds": round(sent["late_seconds"], 2),
        "behind_max_seconds": round(sent["behind_max_seconds"], 3),
        "cpu_seconds": round(sent["cpu_seconds"], 2),
        "cpu_share_of_core": round(sent["cpu_seconds"] / seconds, 3) if seconds else None,
        "process_cpu_seconds": sent["process_cpu_seconds"],
    }


LATE_DAYS = (2, 3, 4)  # days before today


def _start_live(settings: Settings, env: dict[str, str], port: int) -> list[subprocess.Popen]:
    setup = run_measured(txmon_argv("dagster-setup"), env)
    if setup.returncode != 0:
        raise BenchError(f"txmon dagster-setup failed: {setup.stderr.strip()[-400:]}")
    procs = [subprocess.Popen(txmon_argv("dagster", "--port", str(port)), env=env, stdout=subprocess.DEVNULL)]
    _wait_for_sensors(settings)
    return procs


def late(settings: Settings, env: dict[str, str], *, events_per_day: int, port: int, timeout: float = 600) -> dict:
    """Late events for 9 closed region-days, produced at once into the live platform."""
    reset(settings, dagster=True)
    env = {**env, "TXMON_INGEST_MODE": "sensor"}
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in LATE_DAYS]
    source = RESULTS_DIR / ".late.jsonl"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(source, "wb") as out:
        for i, day in enumerate(days):
            start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=10)
            gen = PaymentGenerator(settings, tps=1000, seed=40 + i, start=start)
            for event in gen.events(events_per_day):
                out.write(event.value + b"\n")
    procs = _start_live(settings, env, port)
    try:
        produced_at = datetime.now(UTC)
        sent = run_measured(txmon_argv("produce", str(source)), env)
        if sent.returncode != 0:
            raise BenchError(f"txmon produce failed: {sent.stderr.strip()[-400:]}")
        keys = {(d, r) for d in days for r in settings.regions}
        deadline = time.monotonic() + timeout
        with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
            while True:
                landed = {
                    (d, r): at
                    for d, r, at in conn.execute(
                        """SELECT (event_time AT TIME ZONE 'UTC')::date, region, max(ingested_at)
                       FROM staging.transactions
                       WHERE event_time >= %s AND event_time < %s GROUP BY 1, 2""",
                        (days[-1], days[0] + timedelta(days=1)),
                    )
                }
                published = {}
                if conn.execute("SELECT to_regclass('reporting.published_partitions') IS NOT NULL").fetchone()[0]:
                    published = {
                        (d, r): at
                        for d, r, at in conn.execute(
                            """SELECT partition_date, region, min(published_at) FROM reporting.published_partitions
                           WHERE published_at > %s GROUP BY 1, 2 HAVING count(*) = 2""",
                            (produced_at,),
                        )
                    }
                done = {k for k in keys if k in published and k in landed and published[k] >= landed[k]}
                if done == keys:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"late data: {len(keys - done)} of {len(keys)} region-days not published "
                        f"within {timeout:.0f}s: {sorted(keys - done)}"
                    )
                time.sleep(1)
            events = conn.execute(
                "SELECT count(*) FROM staging.transactions WHERE event_time >= %s AND event_time < %s",
                (days[-1], days[0] + timedelta(days=1)),
            ).fetchone()[0]
    finally:
        terminate(procs, timeout=90)
        end_leases(settings)
        source.unlink(missing_ok=True)
    delays = [(published[k] - landed[k]).total_seconds() for k in sorted(keys)]
    return {
        "region_days": len(keys),
        "events": events,
        "seconds_landed_to_published": percentiles(delays),
        "seconds_produced_to_all_published": round((max(published.values()) - produced_at).total_seconds(), 1),
    }
