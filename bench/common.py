"""What every benchmark section shares."""
# The benchmarks run against the local services (`txmon services up`) but never touch the platform's own data: they use
# their own databases (``txmon_bench``, ``dagster_bench``) and topics (``bench.*``), set through the same ``TXMON_*``
# variables every txmon process reads, so the ``txmon`` commands they start as subprocesses are configured exactly like
# the in-process code.

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import orjson
from confluent_kafka import KafkaException
from psycopg import sql

from orchestration.instance import dagster_env
from txmon.core import kafka as kafka_clients
from txmon.core.db import connect
from txmon.core.settings import REPO_ROOT, KafkaUser, Settings
from txmon.devtools import services
from txmon.devtools.generate import LIFECYCLE_SECONDS, PaymentGenerator
from txmon.devtools.produce import write_replay
from txmon.devtools.services.kafka import MAVEN_PROJECT

BENCH_ENV = {
    "TXMON_WAREHOUSE_DB": "txmon_bench",
    "TXMON_DAGSTER_DB": "dagster_bench",
    "TXMON_TOPIC": "bench.payments.transactions",
    "TXMON_QUARANTINE_TOPIC": "bench.payments.transactions.quarantine",
    "TXMON_CONSUMER_GROUP": "txmon-bench",
}
RESULTS_DIR = REPO_ROOT / "bench" / "results"
VERSIONED = (
    "dagster",
    "dagster-dbt",
    "dbt-core",
    "dbt-postgres",
    "great-expectations",
    "confluent-kafka",
    "psycopg",
    "orjson",
    "pandas",
)


# A rate benchmark whose load delivered less than this share of the rate asked for did not test its targets: its
# verdicts are "not met", whatever its latencies.
LOAD_MET_SHARE = 0.97
CALIBRATION_SECONDS = 1.0  # of the stream, generated to estimate how long the whole stream takes to serialise


class BenchError(RuntimeError):
    pass


def bench_env(**overrides: str) -> dict[str, str]:
    """The environment of a benchmark process: the caller's, pointed at the benchmark's data."""
    env = {k: v for k, v in os.environ.items() if k not in ("TXMON_WAREHOUSE_DSN", "TXMON_REGION_DSNS")}
    return {**env, **BENCH_ENV, **{f"TXMON_{k.upper()}": str(v) for k, v in overrides.items()}}


def bench_settings(**overrides: str) -> Settings:
    return Settings.from_env(bench_env(**overrides))


def reset(settings: Settings, *, dagster: bool = False) -> None:
    """Fresh benchmark databases and topics (created, migrated) on the running local services."""
    dbs = [settings.warehouse_db, *([settings.dagster_db] if dagster else [])]
    with connect(settings.admin_dsn, autocommit=True, purpose="bench") as conn:
        for name in dbs:
            if not name.endswith("_bench"):
                raise BenchError(f"refusing to drop {name!r}: not a benchmark database")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if dagster:
        shutil.rmtree(dagster_env(settings)["DAGSTER_HOME"], ignore_errors=True)  # tick logs of earlier runs
    delete_topics(settings, [settings.topic, settings.quarantine_topic])
    statuses = services.up(settings)
    if not all(s.up for s in statuses):
        raise BenchError("services are not up: " + "; ".join(f"{s.name}: {s.detail}" for s in statuses))


def delete_topics(settings: Settings, topics: list[str]) -> None:
    if not all(t.startswith("bench.") for t in topics):
        raise BenchError(f"refusing to delete {topics}: not benchmark topics")
    admin = kafka_clients.admin(settings, user=KafkaUser.ADMIN)
    existing = admin.list_topics(timeout=10).topics
    doomed = [t for t in topics if t in existing]
    for _, future in admin.delete_topics(doomed).items() if doomed else []:
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if "UNKNOWN_TOPIC" not in str(exc):
                raise
    deadline = time.monotonic() + 30
    while any(t in admin.list_topics(timeout=10).topics for t in doomed) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)  # the broker forgets the deleted topics' metadata asynchronously


def txmon_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "txmon.cli", *args]


@dataclass
class Measured:
    """A finished subprocess: its output, wall time and peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mib: float


def wait_measured(proc: subprocess.Popen, deadline: float, what: str, *, poll: float = 0.05):
    """Wait for ``proc`` until ``deadline`` (monotonic): its wait status and resource usage; killed and BenchError
    past the deadline."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return status, usage
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise BenchError(f"{what} did not finish in time")
        time.sleep(poll)


def run_measured(argv: list[str], env: dict[str, str], *, timeout: float = 3600) -> Measured:
    out_path = RESULTS_DIR / f".stdout-{os.getpid()}"
    err_path = RESULTS_DIR / f".stderr-{os.getpid()}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        status, usage = wait_measured(proc, started + timeout, f"{' '.join(argv[2:])} ({timeout:.0f}s)")
    seconds = time.monotonic() - started
    stdout, stderr = out_path.read_text(), err_path.read_text()
    out_path.unlink()
    err_path.unlink()
    return Measured(os.waitstatus_to_exitcode(status), stdout, stderr, seconds, usage.ru_maxrss / 1024)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(settings: Settings) -> dict:
    """Cores, memory, CPU, OS and the versions that matter, for the record of a run."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    with connect(settings.admin_dsn, autocommit=True, purpose="bench") as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        pg_conf = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
                (["shared_buffers", "work_mem", "synchronous_commit", "max_wal_size", "wal_compression"],),
            ).fetchall()
        )
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    kafka_jars = sorted(p.name for p in (MAVEN_PROJECT / "target" / "lib").glob("kafka_*.jar"))
    return {
        "cpu_cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg,
        "postgresql_settings": pg_conf,
        "kafka": kafka_jars[0].removesuffix(".jar") if kafka_jars else None,
        "packages": versions,
        "colocated": "Kafka, PostgreSQL and txmon on this one machine",
    }


def percentiles(values: list[float], points=(50, 95, 99)) -> dict[str, float | None]:
    """p50/p95/p99 (nearest rank) and max of ``values``, in the values' unit."""
    if not values:
        return {**{f"p{p}": None for p in points}, "max": None, "n": 0}
    ordered = sorted(values)
    out = {f"p{p}": round(ordered[min(len(ordered) - 1, max(0, -(-p * len(ordered) // 100) - 1))], 3) for p in points}
    return {**out, "max": round(ordered[-1], 3), "n": len(ordered)}


STAGING_TABLES = (
    "staging.transactions",
    "staging.duplicate_transactions",
    "staging.rejected_transactions",
    "staging.kafka_offsets",
    "staging.ingest_batches",
    "staging.offset_audit",
    "staging.raw_events",
)


def clear_staging(settings: Settings) -> None:
    """Empty the benchmark's landing tables and positions, so the next ingest reads the topic again."""
    if not settings.warehouse_db.endswith("_bench"):
        raise BenchError(f"refusing to empty {settings.warehouse_db!r}: not a benchmark database")
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        conn.execute(f"TRUNCATE {', '.join(STAGING_TABLES)}")
        conn.execute("CHECKPOINT")


# ---------------------------------------------------------------------------------------------------------- load
# A rate benchmark's load is stated in transactions per second, the generator's mix of lifecycle updates and
# redeliveries following (events per transaction measured on the very stream sent). The stream is generated and
# serialised into a replay file before the clock starts, with its event times from the moment the replay is due to
# begin; `python -m bench.replay` then sends it at its moments as its own process, so the load costs little CPU and
# that CPU is measured. What counts is what the broker acknowledged, and what landed, inside the measured window.


def pregenerate(settings: Settings, path: Path, *, tps: float, seconds: float, seed: int, lead: float = 5.0) -> dict:
    """Serialise ``seconds`` of the stream at ``tps`` transactions/s into ``path``; its first event is due when the
    returned ``start_at`` (epoch seconds) comes: the serialising time (estimated from a short sample) plus ``lead``.

    Events per transaction are counted on the stream once its lifecycle updates have caught up with it (after
    LIFECYCLE_SECONDS; the whole stream when it is shorter), as they run in a measured window after a warm-up."""
    began = time.monotonic()
    sample = PaymentGenerator(settings, tps=tps, seed=seed + 1)
    sampled = sum(1 for _ in sample.until(CALIBRATION_SECONDS))
    per_stream_second = (time.monotonic() - began) / CALIBRATION_SECONDS
    start_at = time.time() + per_stream_second * seconds * 1.3 + lead
    gen = PaymentGenerator(settings, tps=tps, seed=seed, start=datetime.fromtimestamp(start_at, UTC))
    began = time.monotonic()
    settled = [0, 0]  # events, transactions after the lifecycle's first updates
    since = LIFECYCLE_SECONDS if seconds > 2 * LIFECYCLE_SECONDS else 0.0

    def counted(events):
        for event in events:
            if event.at >= since:
                settled[0] += 1
                settled[1] += event.first
            yield event

    written = write_replay(path, counted(gen.until(seconds)))
    if not written.transactions or not settled[1]:
        raise BenchError(f"the generator gave no transaction for {seconds}s at {tps} tx/s")
    return {
        "start_at": start_at,
        "transactions": written.transactions,
        "events": written.sent,
        "events_per_transaction": round(settled[0] / settled[1], 4),
        "calibration_events": sampled,
        "serialise_seconds": round(time.monotonic() - began, 1),
        "file_mib": round(path.stat().st_size / 2**20, 1),
    }


def replay_load(path: Path, env: dict[str, str], *, start_at: float, window: tuple[float, float], timeout: float):
    """Start `python -m bench.replay` on ``path``; ``finish`` waits for it and returns its report and CPU."""
    out_path = path.with_suffix(".out")
    out = open(out_path, "wb")  # closed by finish
    argv = [sys.executable, "-m", "bench.replay", str(path), "--start-at", repr(start_at), "--window"]
    argv += [str(w) for w in window]
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def finish() -> dict:
        try:
            status, usage = wait_measured(
                proc, time.monotonic() + timeout, f"the load's replay ({timeout:.0f}s)", poll=0.2
            )
        finally:
            out.close()
        text = out_path.read_text()
        out_path.unlink()
        proc.returncode = os.waitstatus_to_exitcode(status)
        lines = text.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise BenchError(f"the load's replay failed ({proc.returncode}): {text.strip()[-400:]}")
        report = orjson.loads(lines[-1])
        report["process_cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
        return report

    return proc, finish


def load_result(
    asked_tps: float,
    window_seconds: float,
    events_per_transaction: float,
    *,
    acknowledged: tuple[int, int],
    landed: tuple[int, int],
) -> dict:
    """The load a rate benchmark asked for against what it got in its measured window: (transactions, events)
    acknowledged by the broker and landed; ``met`` only when both reached LOAD_MET_SHARE of the asked rate."""
    if window_seconds <= 0 or asked_tps <= 0:
        raise BenchError(f"no load to judge: {asked_tps} tx/s over {window_seconds}s")

    def rates(counts: tuple[int, int]) -> dict:
        tx, events = counts
        return {
            "transactions": tx,
            "events": events,
            "transactions_per_second": round(tx / window_seconds, 1),
            "events_per_second": round(events / window_seconds, 1),
        }

    got = {"acknowledged": rates(acknowledged), "landed": rates(landed)}
    share = min(got[k]["transactions_per_second"] for k in got) / asked_tps
    return {
        "asked_transactions_per_second": asked_tps,
        "asked_events_per_second": round(asked_tps * events_per_transaction, 1),
        "events_per_transaction": events_per_transaction,
        "window_seconds": window_seconds,
        **got,
        "share_of_asked": round(share, 4),
        "met": share >= LOAD_MET_SHARE,
    }
