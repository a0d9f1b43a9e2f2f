"""The rate benchmarks' load: the 97% rule, the verdicts it overrides, and the pre-serialised replay file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from bench.common import LOAD_MET_SHARE, BenchError, load_result
from bench.cpu import CpuProfile
from bench.runner import table, verdicts
from txmon.core.settings import Settings
from txmon.devtools.generate import Generated, PaymentGenerator
from txmon.devtools.produce import read_replay, replay, write_replay

START = datetime(2026, 11, 24, tzinfo=UTC)


def load(acked_tx: int, landed_tx: int, *, asked: float = 10_000, seconds: float = 10) -> dict:
    return load_result(asked, seconds, 1.6, acknowledged=(acked_tx, int(acked_tx * 1.6)), landed=(landed_tx, 0))


def test_load_met_at_97_percent_of_the_asked_rate_acknowledged_and_landed():
    assert LOAD_MET_SHARE == 0.97
    met = load(97_000, 97_000)
    assert met["met"] and met["share_of_asked"] == 0.97
    assert met["acknowledged"]["transactions_per_second"] == 9_700.0
    assert met["acknowledged"]["events_per_second"] == 15_520.0
    assert met["asked_events_per_second"] == 16_000.0
    assert not load(96_999, 100_000)["met"]  # the broker got less
    assert not load(100_000, 80_000)["met"]  # less landed
    assert load(120_000, 120_000)["met"]


def test_load_without_a_window_is_an_error():
    with pytest.raises(BenchError):
        load(1, 1, seconds=0)


def _freshness(load_met: bool) -> dict:
    share = 1.0 if load_met else 0.8
    return {
        "freshness": {
            "sensor": {
                "load": load(int(100_000 * share), int(100_000 * share)),
                "generator": {"cpu_seconds": 3.0, "cpu_share_of_core": 0.05},
                "landing_seconds": {"p50": 0.2, "p95": 0.4, "p99": 0.5, "max": 0.9, "n": 10},
                "suspicious_seconds": {"p50": 5.0, "p95": 20.0, "max": 25.0, "n": 3, "not_seen": 0},
                "lag_max": 10,
            }
        }
    }


def test_latencies_are_not_met_when_the_load_was_not():
    good = {v["measure"]: v for v in verdicts(_freshness(load_met=True))}
    assert good["freshness sensor: landing p99 (s)"]["met"] is True
    assert good["freshness sensor: delivered / asked tx/s"]["met"] is True
    short = {v["measure"]: v for v in verdicts(_freshness(load_met=False))}
    p99 = short["freshness sensor: landing p99 (s)"]
    assert p99["value_met"] is True and p99["load_met"] is False and p99["met"] is False
    assert short["freshness sensor: published p95 (s)"]["met"] is False
    assert short["freshness sensor: delivered / asked tx/s"]["met"] is False
    text = table(_freshness(load_met=False))
    assert "NO (load not met)" in text
    assert "freshness sensor: acknowledged tx/s" in text and "8,000.0" in text
    assert "yes" not in text.split("landing p99")[1].splitlines()[0]


def test_a_replay_file_gives_back_the_events_as_serialised(tmp_path):
    gen = PaymentGenerator(Settings.from_env({}), tps=300, seed=2, bad_rate=0.05, start=START)
    events = [*gen.until(5), Generated(None, b"{not json", 5.5, True), Generated(b"", b"x", 5.6, False)]
    path = tmp_path / "load.replay"
    written = write_replay(path, events)
    assert written.sent == len(events)
    assert written.transactions == sum(e.first for e in events) == 300 * 5 + 1
    assert list(read_replay(path)) == events  # keys (none, empty), values, moments and first flags


def test_a_replay_file_is_read_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr("txmon.devtools.produce.READ_BLOCK", 1000)
    events = [Generated(b"k" * (i % 7), b"v" * (i * 37 % 3000), i / 10, i % 2 == 0) for i in range(300)]
    path = tmp_path / "small-blocks.replay"
    write_replay(path, events)
    assert list(read_replay(path)) == events
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        list(read_replay(path))


class FakeMessage:
    def __init__(self, at: float):
        self.at = at

    def timestamp(self):
        return (1, round(self.at * 1000))


class FakeProducer:
    """Acknowledges every message at flush, with the time it was produced as its timestamp."""

    def __init__(self):
        self.sent: list[tuple[float, bytes | None, bytes]] = []
        self.callbacks = []

    def produce(self, topic, value, key, on_delivery):
        self.sent.append((time.time(), key, value))
        self.callbacks.append(on_delivery)

    def poll(self, _timeout):
        return 0

    def flush(self, _timeout):
        for (at, _, _), callback in zip(self.sent, self.callbacks, strict=True):
            callback(None, FakeMessage(at))
        return 0


def test_replay_sends_each_event_at_its_moment_and_counts_the_window(tmp_path, monkeypatch):
    producer = FakeProducer()
    monkeypatch.setattr("txmon.devtools.produce.kafka_clients.producer", lambda _settings, **_: producer)
    events = [Generated(b"k", b"v%d" % i, i / 100, i % 2 == 0) for i in range(150)]  # 100 events/s for 1.5 s
    path = tmp_path / "paced.replay"
    write_replay(path, events)
    report = replay(Settings.from_env({}), path, start_at=time.time() + 0.2, window=(0.5, 1.0))
    assert report.sent == report.acknowledged == 150 and report.failed == 0
    assert report.transactions == report.acknowledged_transactions == 75
    assert [value for _, _, value in producer.sent] == [e.value for e in events]
    offsets = [at - report.started_at for at, _, _ in producer.sent]
    assert all(abs(offset - e.at) < 0.05 for offset, e in zip(offsets, events, strict=True))  # paced, not bursted
    assert 1.4 < report.seconds < 2.0
    assert 45 <= report.window_events <= 55 and 22 <= report.window_transactions <= 28
    assert report.late_seconds < 0.05
    assert 0 <= report.cpu_seconds < report.seconds


def test_cpu_profile_attributes_a_busy_process_to_its_component():
    # A process spinning for the whole window, named like the load's replay, and the machine's busy cores beside it.
    spin = "import time\nend = time.time() + 2.5\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin, "bench.replay"])
    try:
        now = time.time()
        profile = CpuProfile((now + 0.3, now + 2.0), interval=0.2).result(timeout=10)
    finally:
        busy.wait()
    assert profile["cores"] == os.cpu_count()
    assert profile["by_component"]["load replay"] >= 0.2  # its share of a core, however loaded the machine is
    assert profile["busy_cores"] >= profile["by_component"]["load replay"] - 0.05
