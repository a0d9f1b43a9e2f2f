"""Several ingest processes on one machine: the topic's partitions split between them."""
# One Python process validates and encodes about 40,000 events/s (it is bound by the interpreter, not by PostgreSQL);
# the partitions are the unit of parallelism, so ``txmon ingest`` starts one child ``txmon ingest --partitions ...`` per
# share and sums their reports. The children fence each other exactly like workers on different machines (the positions
# stored in PostgreSQL).

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException

from ingestion.consumer import Outage, partitions_of
from txmon.core import kafka as kafka_clients
from txmon.core.leases import held, lease_file, renew
from txmon.core.processes import child_env, signal_when_parent_ends, terminate
from txmon.core.settings import KafkaUser, Settings

# glibc mallopt parameters
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


class ProcessesError(RuntimeError):
    pass


def process_count(settings: Settings, partitions: int) -> int:
    """``ingest_processes``, or one per CPU core when it is 0; never more than the partitions."""
    wanted = settings.ingest_processes or os.cpu_count() or 1
    return max(1, min(wanted, partitions))


def topic_partitions(settings: Settings, stop: threading.Event | None = None) -> list[int]:
    """The topic's partitions; waits for a broker that is not up yet (within the outage budget)."""
    stop = stop or threading.Event()
    outage = Outage("Kafka", settings.outage_budget_seconds)
    consumer = kafka_clients.consumer(settings, user=KafkaUser.INGEST)
    try:
        while True:
            try:
                partitions = partitions_of(consumer, settings)
                outage.recovered()
                return partitions
            except KafkaException as exc:
                if stop.wait(outage.failed(exc)):
                    raise ProcessesError("stopped while waiting for Kafka") from None
    finally:
        consumer.close()


def split(partitions: list[int], n: int) -> list[list[int]]:
    return [partitions[i::n] for i in range(n) if partitions[i::n]]


def merge(summaries: list[dict]) -> dict:
    """One report for the children: counts summed, time from the first poll to the last commit of any."""
    out = {
        k: sum(s[k] for s in summaries)
        for k in ("consumed", "landed", "duplicates", "quarantined", "batches", "offset_conflicts", "outages")
    }
    starts = [s["first_poll_at"] for s in summaries if s.get("first_poll_at") is not None]
    ends = [s["last_commit_at"] for s in summaries if s.get("last_commit_at") is not None]
    seconds = max(ends) - min(starts) if starts and ends else 0.0
    slices: dict[str, int] = {}
    for s in summaries:
        for key, n in s["slices"].items():
            slices[key] = slices.get(key, 0) + n
    return {
        **out,
        "seconds_first_poll_to_last_commit": round(seconds, 3),
        "events_per_second": round(out["consumed"] / seconds, 1) if seconds > 0 else 0.0,
        "first_poll_at": min(starts) if starts else None,
        "last_commit_at": max(ends) if ends else None,
        "processes": len(summaries),
        "slices": dict(sorted(slices.items())),
    }


def give_memory_back() -> None:
    """glibc: message-sized allocations (256 KiB and more) are mmapped and returned to the system when
    freed, and threads share two arenas, so an ingest process's RSS follows the batch bound rather than
    the highest it ever reached (glibc otherwise raises its mmap threshold after the first large free)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 256 * 1024)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


def run_processes(child_args: list[list[str]], stop: threading.Event, env: dict[str, str] | None = None) -> dict:
    """Run one `txmon ingest --processes 1 ARGS` child per entry until they exit; ``stop`` ends them gracefully.
    The children serve no metrics of their own (their parent serves their sum, when ``env`` says where)."""
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "txmon.cli",
                "ingest",
                "--processes",
                "1",
                "--metrics-port",
                "0",
                "--no-progress",
                *args,
            ],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=signal_when_parent_ends(signal.SIGKILL),  # a killed `txmon ingest` leaves no worker
            env=child_env(base=env),
        )
        for args in child_args
    ]
    outputs: list[str] = [""] * len(children)

    def collect(i: int) -> None:
        stdout = children[i].stdout
        assert stdout is not None  # stdout=PIPE
        outputs[i] = stdout.read()

    readers = [threading.Thread(target=collect, args=(i,), daemon=True) for i in range(len(children))]
    for r in readers:
        r.start()
    stopping = False
    while any(c.poll() is None for c in children):
        if stop.wait(0.2) and not stopping:
            stopping = True
            terminate(children, timeout=None)  # each finishes its batch
        elif not stopping and any(c.returncode not in (None, 0) for c in children):
            # One gave up (its outage budget, positions that do not match the topic): its partitions would
            # stop while the others go on and the parent looks healthy. Stop them all and say so.
            stopping = True
            terminate(children, timeout=None)
    for r in readers:
        r.join()
    failed = [c for c in children if c.returncode != 0]
    if failed:
        raise ProcessesError(f"{len(failed)} of {len(children)} ingest processes failed (exit {failed[0].returncode})")
    return merge([json.loads(out.strip().splitlines()[-1]) for out in outputs])


@dataclass(frozen=True)
class Lander:
    pid: int
    started: bool  # by this call


def _lander_files(settings: Settings) -> tuple[Path, Path]:
    lease = lease_file(settings, settings.topic)
    return lease, lease.with_suffix(".pid")


def _alive(pid: int) -> bool:
    try:
        return b"--lease" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def keep_landing(settings: Settings) -> Lander:
    """Renew the lander's lease, and start a lander (`txmon ingest --lease`) when none is alive.

    For the Dagster sensor in `sensor` mode: landing never waits for a tick (no gap between ticks),
    runs in its own processes (no competition for the code server's GIL with the sensors running
    dbt), and stops by itself within LEASE_SECONDS once the sensor stops ticking (turned off in the
    UI, daemon stopped).
    """
    lease, pid_file = _lander_files(settings)
    renew(lease)
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        pid = 0
    if pid and _alive(pid):
        return Lander(pid, started=False)
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "lander.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "txmon.cli", "ingest", "--lease", str(lease)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=child_env(),
        )
    pid_file.write_text(str(proc.pid))
    return Lander(proc.pid, started=True)


def watch_lease(lease: Path, stop: threading.Event) -> threading.Thread:
    """Set ``stop`` once ``lease`` is gone or older than LEASE_SECONDS."""

    def watch() -> None:
        while not stop.wait(1.0):
            if not held(lease):
                stop.set()

    thread = threading.Thread(target=watch, name="txmon-lease", daemon=True)
    thread.start()
    return thread
