"""Freshness under load: the platform live (Dagster daemon, sensors), payments at a steady rate.

Per event landed in the measured window: landing delay = ``ingested_at - produced_at`` (the
statement time of the landing transaction minus the Kafka message timestamp, both this machine's
clock). Per over-threshold transaction produced in the window: the delay from its first event's
produce time to the moment its row was first seen in ``marts.suspicious_activity`` (polled every
second). Consumer lag sampled every second. Run with the Dagster sensor landing (``sensor``) and
with a standalone `txmon ingest` worker (``worker``, the sensor then only reports).
"""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

from bench.common import BenchError, percentiles, reset, run_measured, txmon_argv
from ingestion.lag import consumer_lag
from ingestion.processes import stop_landing
from txmon.config import Settings
from txmon.db import connect
from txmon.services.common import terminate

LANDING = """
SELECT count(*),
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - produced_at)),
       max(extract(epoch FROM ingested_at - produced_at))
FROM staging.transactions WHERE produced_at >= %s AND produced_at < %s
"""
OVER_THRESHOLD_IN_WINDOW = """
SELECT m.transaction_id, min(t.produced_at)
FROM marts.suspicious_activity AS m JOIN staging.transactions AS t USING (transaction_id)
WHERE 'amount_over_threshold' = ANY(m.reasons)
GROUP BY m.transaction_id HAVING min(t.produced_at) >= %s AND min(t.produced_at) < %s
"""


class _Sampler(threading.Thread):
    """Every second: the consumer lag, and which suspicious transactions are in the mart (first seen when)."""

    def __init__(self, settings: Settings):
        super().__init__(daemon=True)
        self.settings = settings
        self.stop = threading.Event()
        self.lag: list[tuple[float, int]] = []
        self.first_seen: dict[str, datetime] = {}

    def run(self) -> None:
        since = datetime(1970, 1, 1, tzinfo=UTC)
        with connect(self.settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
            while not self.stop.wait(1.0):
                now = datetime.now(UTC)
                try:
                    self.lag.append((time.time(), sum(consumer_lag(self.settings).values())))
                except Exception:  # a missed sample is not a failed benchmark
                    pass
                if conn.execute("SELECT to_regclass('marts.suspicious_activity')").fetchone()[0] is None:
                    continue
                rows = conn.execute(
                    "SELECT transaction_id FROM marts.suspicious_activity WHERE refreshed_at > %s",
                    (since - timedelta(seconds=120),),  # a run's rows carry its start time; it commits later
                ).fetchall()
                for (tx,) in rows:
                    self.first_seen.setdefault(tx, now)
                since = now


def _wait_for_sensors(settings: Settings, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    with connect(settings.dagster_dsn, autocommit=True, purpose="bench") as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT to_regclass('job_ticks')").fetchone()[0] is not None:
                names = {n for (n,) in conn.execute(
                    "SELECT DISTINCT (tick_body::jsonb)->>'job_name' FROM job_ticks"
                ).fetchall() if n}
                if {"kafka_ingestion", "open_day_marts"} <= names:
                    return
            time.sleep(2)
    raise BenchError(f"the Dagster sensors did not tick within {timeout:.0f}s (see .txmon/logs/daemon.log)")


def run(settings: Settings, env: dict[str, str], *, mode: str, tps: float, seconds: float, warmup: float,
        port: int) -> dict:
    reset(settings, dagster=True)
    env = {**env, "TXMON_INGEST_MODE": mode}
    setup = run_measured(txmon_argv("dagster-setup"), env)
    if setup.returncode != 0:
        raise BenchError(f"txmon dagster-setup failed: {setup.stderr.strip()[-400:]}")
    procs = [subprocess.Popen(txmon_argv("dagster", "--port", str(port)), env=env, stdout=subprocess.DEVNULL)]
    sampler = _Sampler(settings)
    try:
        if mode == "worker":
            procs.append(subprocess.Popen(txmon_argv("ingest"), env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        _wait_for_sensors(settings)
        gen = subprocess.Popen(txmon_argv("generate", "--tps", str(tps), "--duration", str(warmup + seconds)),
                               env=env, stdout=subprocess.DEVNULL)
        procs.append(gen)
        started = datetime.now(UTC)
        window = (started + timedelta(seconds=warmup), started + timedelta(seconds=warmup + seconds))
        sampler.start()
        gen.wait(timeout=warmup + seconds + 600)
        if gen.returncode != 0:
            raise BenchError(f"the generator failed ({gen.returncode})")
        # Drain: everything landed, and the open day's suspicious activity refreshed past the window.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (not sampler.lag or sampler.lag[-1][1] > 0):
            time.sleep(1)
        time.sleep(30)
        sampler.stop.set()
        sampler.join()
    finally:
        sampler.stop.set()
        terminate(procs, timeout=90)
        stop_landing(settings)
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        n, (p50, p95, p99), worst = conn.execute(LANDING, window).fetchone()
        produced = conn.execute(OVER_THRESHOLD_IN_WINDOW, window).fetchall()
    delays = [(sampler.first_seen[tx] - at).total_seconds() for tx, at in produced if tx in sampler.first_seen]
    in_window = [lag for t, lag in sampler.lag if window[0].timestamp() <= t < window[1].timestamp()]
    return {
        "mode": mode,
        "tps": tps,
        "window_seconds": seconds,
        "warmup_seconds": warmup,
        "landing_seconds": {"p50": float(p50 or 0), "p95": float(p95 or 0), "p99": float(p99 or 0),
                            "max": float(worst or 0), "n": n},
        "suspicious_seconds": {**percentiles(delays), "not_seen": len(produced) - len(delays)},
        "lag_max": max(in_window, default=None),
        "lag_samples": [[round(t - window[0].timestamp(), 1), lag] for t, lag in sampler.lag],
    }
