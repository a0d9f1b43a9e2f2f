"""Where a rate benchmark's CPU goes: the machine's busy cores over the measured window, by component."""
# Read from /proc twice a second: the machine's busy time (/proc/stat, exact) and each process's user + system time
# (/proc/<pid>/stat), each process put in one component by its command line (a PostgreSQL backend by the role it
# connected as). A process that ends between two samples loses its last half second; what no sampled process accounts
# for is reported as "unattributed" (short-lived processes: dbt invocations, run workers that ended).

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
# First match wins: (component, what its command line contains).
COMPONENTS = (
    ("load replay", "bench.replay"),
    ("bench itself (samplers)", "txmon bench"),
    ("kafka", "kafka.Kafka"),
    ("postgres: landing", "postgres: txmon_ingest"),
    ("postgres: transform (state merge, marts, checks)", "postgres: txmon_transform"),
    ("postgres: publication", "postgres: txmon_publish"),
    ("postgres: dagster storage", "postgres: txmon_dagster"),
    ("postgres: other sessions", "postgres: txmon"),
    ("postgres: parallel workers", "postgres: parallel worker"),
    ("postgres: wal, checkpoints, autovacuum", "postgres"),
    ("landing: txmon ingest", "txmon.cli ingest"),
    ("landing: txmon ingest", "txmon ingest"),
    # A run is a child process of a code server, and its dbt invocations run in its own children.
    ("dagster runs (dbt, checks, publication)", "multiprocessing.spawn"),
    ("dagster runs (dbt, checks, publication)", "execute_run"),
    ("dagster code servers", "dagster api grpc"),
    ("dagster daemon", "dagster-daemon"),
    ("dagster webserver", "dagster"),
)


def _busy_ticks() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def _processes() -> dict[int, tuple[str, int]]:
    """pid -> (component, CPU ticks so far) of every process txmon's components run as."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        component = next((name for name, needle in COMPONENTS if needle in cmdline), None)
        if component is not None:
            fields = stat.rsplit(")", 1)[1].split()
            found[int(entry.name)] = (component, int(fields[11]) + int(fields[12]))
    return found


class CpuProfile(threading.Thread):
    """Samples over ``window`` (epoch seconds): `result()` waits for its end and gives busy cores per component."""

    def __init__(self, window: tuple[float, float], interval: float = 0.5):
        super().__init__(daemon=True)
        self.window = window
        self.interval = interval
        self.by_component: dict[str, int] = {}
        self._seen: dict[int, tuple[str, int]] = {}
        self.start()

    def run(self) -> None:
        time.sleep(max(self.window[0] - time.time(), 0))
        self._busy0, self._clock0 = _busy_ticks(), os.times().elapsed
        self._seen = _processes()
        while time.time() < self.window[1]:
            time.sleep(min(self.interval, max(self.window[1] - time.time(), 0)))
            self._sample()
        self._busy1, self._clock1 = _busy_ticks(), os.times().elapsed

    def _sample(self) -> None:
        for pid, (component, ticks) in _processes().items():
            before = self._seen.get(pid, (component, 0))[1]  # a process started meanwhile counts from 0
            self.by_component[component] = self.by_component.get(component, 0) + ticks - before
            self._seen[pid] = (component, ticks)

    def result(self, timeout: float) -> dict:
        self.join(timeout)
        return {} if self.is_alive() else self.report()

    def report(self) -> dict:
        seconds = self._clock1 - self._clock0
        if seconds <= 0:
            return {}

        def cores(ticks: int) -> float:
            return round(ticks / TICKS / seconds, 2)

        busy = self._busy1 - self._busy0
        attributed = sum(self.by_component.values())
        return {
            "seconds": round(seconds, 1),
            "cores": os.cpu_count(),
            "busy_cores": cores(busy),
            "by_component": {
                name: cores(ticks) for name, ticks in sorted(self.by_component.items(), key=lambda kv: -kv[1])
            },
            "unattributed": cores(max(busy - attributed, 0)),
        }
