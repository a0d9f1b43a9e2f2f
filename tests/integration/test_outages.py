"""A worker rides out PostgreSQL and Kafka outages and lands every event exactly once.

Real faults on the real services: PostgreSQL and the broker restarted (stopped, then started by
txmon's own service code), the worker's connections killed with pg_terminate_backend, the
connection cut at the landing transaction's COMMIT (by a loopback TCP proxy, before and after the
server committed), and an outage longer than the budget.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.integration.faults import PostgresProxy
from tests.integration.test_ingest import assert_every_offset_accounted_for
from txmon.devtools.services.kafka import Kafka
from txmon.devtools.services.postgres import Postgres

START = "2026-11-26T10:00:00Z"
EVENTS_PER_TRANSACTION = 1.6  # `txmon generate --tps` paces transactions: about this many events each


class Produced(set):
    """The identities (transaction_id, status) that must land, and how many messages carried them."""

    messages = 0

    def __or__(self, other: Produced) -> Produced:
        out = Produced(set(self) | set(other))
        out.messages = self.messages + other.messages
        return out


def backlog(platform, tmp_path, name: str, events: int, seed: int) -> Produced:
    """Produce ``events`` synthetic payments (no malformed ones, a few producer redeliveries)."""
    source = tmp_path / f"{name}.jsonl"
    platform.txmon(
        "generate",
        "--tps",
        "1000",
        "--duration",
        str(events / 1000 / EVENTS_PER_TRANSACTION),
        "--seed",
        str(seed),
        "--start",
        START,
        "--output",
        str(source),
    )
    platform.txmon("produce", str(source))
    lines = source.read_text().splitlines()
    produced = Produced((e["transaction_id"], e["status"]) for e in map(json.loads, lines))
    produced.messages = len(lines)
    return produced


def landed(platform) -> int:
    return platform.query("SELECT count(*) FROM staging.transactions")[0][0]


def wait_for(condition, timeout: float, what: str, log_path=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; " + (
            log_path.read_text()[-3000:] if log_path else ""
        )
        time.sleep(0.2)


def assert_exactly_once(platform, expected: Produced) -> None:
    rows = platform.query("SELECT transaction_id, status FROM staging.transactions")
    assert len(rows) == len(set(rows)), "an event was stored twice"
    assert set(rows) == expected, "landed events differ from the produced ones"
    # Only the producer's own redeliveries are duplicates: a batch landed twice would add its events here.
    duplicates = platform.query("SELECT count(*) FROM staging.duplicate_transactions")[0][0]
    assert duplicates == expected.messages - len(expected), "a batch landed twice"
    assert_every_offset_accounted_for(platform)


def stop_worker(worker, log_path) -> tuple[dict, str]:
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=120)
    log = log_path.read_text()
    assert worker.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return json.loads(out.strip().splitlines()[-1]), log


@pytest.fixture
def small_batches(platform):
    platform.env["TXMON_BATCH_MAX_EVENTS"] = "500"  # many commits, so a fault lands between and inside them
    return platform


@pytest.mark.parametrize("mode", [[], ["--group"]], ids=["assigned", "group"])
def test_postgres_restart_while_landing(small_batches, tmp_path, base_settings, mode):
    platform = small_batches
    first = backlog(platform, tmp_path, "first", 20_000, 1)
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = platform.popen("ingest", "--processes", "1", *mode, stdout=-1, stderr=log, text=True)
    wait_for(lambda: landed(platform) > 2_000, 120, "the first batches")
    postgres = Postgres(base_settings)
    postgres.stop()
    second = backlog(platform, tmp_path, "second", 5_000, 2)  # Kafka is up: the worker polls, cannot land
    time.sleep(3)
    assert worker.poll() is None, "the worker gave up during a 3 s outage"
    postgres.start()
    wait_for(lambda: landed(platform) == len(first | second), 180, "everything to land after the restart", log_path)
    report, log = stop_worker(worker, log_path)
    assert "PostgreSQL unreachable" in log and "PostgreSQL reachable again" in log
    assert report["outages"] >= 1
    assert_exactly_once(platform, first | second)


def test_kafka_restart_and_both_restarted(small_batches, tmp_path, base_settings):
    platform = small_batches
    first = backlog(platform, tmp_path, "first", 5_000, 3)
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = platform.popen("ingest", "--processes", "1", stdout=-1, stderr=log, text=True)
    wait_for(lambda: landed(platform) == len(first), 120, "the first backlog")
    kafka, postgres = Kafka(base_settings), Postgres(base_settings)

    kafka.stop()
    time.sleep(3)
    assert worker.poll() is None, "the worker gave up while the broker was away"
    kafka.start()
    second = backlog(platform, tmp_path, "second", 5_000, 4)
    wait_for(lambda: landed(platform) == len(first | second), 180, "landing after the broker restart", log_path)

    kafka.stop()
    postgres.stop()
    time.sleep(3)
    postgres.start()
    kafka.start()
    third = backlog(platform, tmp_path, "third", 5_000, 5)
    wait_for(lambda: landed(platform) == len(first | second | third), 180, "landing after both restarted", log_path)
    report, log = stop_worker(worker, log_path)
    assert "Kafka unreachable" in log and "Kafka reachable again" in log
    assert report["outages"] >= 2
    assert_exactly_once(platform, first | second | third)


def test_connections_terminated_mid_batch(small_batches, tmp_path):
    platform = small_batches
    expected = backlog(platform, tmp_path, "backlog", 30_000, 6)
    db = platform.settings.warehouse_db
    killed = []
    done = threading.Event()

    def kill() -> None:
        while not done.wait(0.4):
            killed.extend(
                platform.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name LIKE 'txmon:ingest:%%' AND state = 'active'",
                    (db,),
                )
            )

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        proc = platform.txmon("ingest", "--until-idle", "--processes", "1", timeout=300)
    finally:
        done.set()
        killer.join()
    assert killed, "no landing connection was caught working; the test proves nothing"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["outages"] >= 1 and "Traceback" not in proc.stderr
    assert_exactly_once(platform, expected)


@pytest.mark.parametrize("deliver", [True, False], ids=["committed-unheard", "never-committed"])
def test_connection_lost_at_commit(small_batches, tmp_path, deliver):
    """The COMMIT's outcome is unknown to the worker: the stored positions decide, nothing is lost or doubled."""
    platform = small_batches
    expected = backlog(platform, tmp_path, "backlog", 5_000, 7)
    proxy = PostgresProxy(platform.settings.pg_host, platform.settings.pg_port)
    try:
        proxy.cut_at_commit(deliver=deliver)
        proc = platform.txmon(
            "ingest", "--until-idle", "--processes", "1", env_extra={"TXMON_PG_PORT": str(proxy.port)}, timeout=300
        )
    finally:
        proxy.close()
    assert proxy.cuts == 1
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["outages"] == 1 and "PostgreSQL unreachable" in proc.stderr
    assert_exactly_once(platform, expected)


def test_an_outage_beyond_the_budget_ends_the_worker_with_a_clear_message(platform, tmp_path):
    backlog(platform, tmp_path, "backlog", 1_000, 8)
    proxy = PostgresProxy(platform.settings.pg_host, platform.settings.pg_port)
    proxy.refuse()
    try:
        started = time.monotonic()
        proc = platform.txmon(
            "ingest",
            "--until-idle",
            "--processes",
            "1",
            check=False,
            timeout=120,
            env_extra={"TXMON_PG_PORT": str(proxy.port), "TXMON_OUTAGE_BUDGET_SECONDS": "4"},
        )
    finally:
        proxy.close()
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("txmon: PostgreSQL unreachable for") and "beyond the outage budget of 4s" in last
    assert "Traceback" not in proc.stderr
    assert 4 <= time.monotonic() - started < 60


def test_a_recreated_topic_stops_the_worker_loudly_and_the_audit_reports_it(platform, tmp_path):
    from txmon.core import kafka as kafka_clients
    from txmon.core.settings import KafkaUser
    from txmon.devtools.services.kafka import Kafka as KafkaService
    from txmon.quality.reconciliations import kafka_offsets_accounted

    backlog(platform, tmp_path, "before", 2_000, 9)
    platform.txmon("ingest", "--until-idle", "--processes", "1")
    admin = kafka_clients.admin(platform.settings, user=KafkaUser.ADMIN)
    for future in admin.delete_topics([platform.settings.topic]).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 60
    while True:  # the broker finishes deleting asynchronously
        try:
            KafkaService(platform.settings).ensure_topics()
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(1)
    backlog(platform, tmp_path, "after", 500, 10)  # fewer messages than before: every old position lies past the end

    proc = platform.txmon("ingest", "--until-idle", "--processes", "1", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("txmon: not resuming") and "it was deleted and created again" in message
    assert platform.query("SELECT count(*) FROM staging.transactions")[0][0] < 2_000 + 1  # nothing new landed

    audit = kafka_offsets_accounted(platform.settings)
    assert not audit.passed and any("created again" in p for p in audit.metadata["position_problems"])


MEASURE_PEAK = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "txmon.cli", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def test_memory_stays_bounded_with_megabyte_messages(platform, tmp_path):
    """400 messages of about 0.9 MB (360 MB, incompressible): the byte bound keeps a batch, not the backlog,
    in memory (without it this backlog takes one batch and about 430 MiB)."""
    import base64
    import subprocess
    import sys

    from tests.integration.test_ingest import event, line

    source = tmp_path / "large.jsonl"
    with open(source, "w") as fh:
        for i in range(400):
            note = base64.b64encode(os.urandom(675_000)).decode()
            fh.write(line(event(f"big-{i}", event_time="2026-11-26T10:00:00Z", note=note)) + "\n")
    platform.txmon("produce", str(source))
    platform.env["TXMON_BATCH_MAX_SECONDS"] = "10"  # neither the clock nor the count (20,000) closes a batch early
    out_path, err_path, peak_path = tmp_path / "out", tmp_path / "err", tmp_path / "peak"
    # The peak of the ingest process alone: Linux keeps a process's peak RSS across exec, so it is forked from
    # a small fresh interpreter, not from this test process (whose size it would otherwise inherit).
    with open(out_path, "w") as out, open(err_path, "w") as err:
        subprocess.run(
            [sys.executable, "-c", MEASURE_PEAK, str(peak_path), "ingest", "--until-idle", "--processes", "1"],
            env=platform.env,
            stdout=out,
            stderr=err,
            check=False,
            timeout=300,
        )
    status, peak_kib = map(int, peak_path.read_text().split())
    assert status == 0, err_path.read_text()[-2000:]
    report = json.loads(out_path.read_text().strip().splitlines()[-1])
    assert report["landed"] == 400 and report["batches"] >= 20  # 16 MiB batches
    peak_mib = peak_kib / 1024
    assert peak_mib < 300, f"peak RSS {peak_mib:.0f} MiB for a 360 MB backlog"


def test_sensors_skip_their_tick_while_the_warehouse_is_unreachable(platform, monkeypatch):
    from dagster import DagsterInstance, SkipReason, build_sensor_context

    from orchestration.definitions import build_definitions
    from orchestration.defs.ingestion.sensors import kafka_ingestion_sensor
    from orchestration.resources import TxmonResource

    proxy = PostgresProxy(platform.settings.pg_host, platform.settings.pg_port)
    proxy.refuse()
    for name, value in platform.env.items():
        if name.startswith("TXMON_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TXMON_PG_PORT", str(proxy.port))
    monkeypatch.setenv("TXMON_INGEST_MODE", "worker")
    try:
        with DagsterInstance.ephemeral() as instance:
            refresh = build_definitions(platform.settings).get_sensor_def("marts_refresh")
            for sensor in (kafka_ingestion_sensor, refresh):
                context = build_sensor_context(instance=instance, resources={"txmon": TxmonResource()})
                result = sensor(context)
                assert isinstance(result, SkipReason), sensor.name
                assert result.skip_message.startswith("PostgreSQL unreachable"), result.skip_message
    finally:
        proxy.close()
