"""Several ingest processes on one machine: the topic's partitions split between them.

One Python process validates and encodes about 40,000 events/s (it is bound by the interpreter,
not by PostgreSQL); the partitions are the unit of parallelism, so ``txmon ingest`` starts one
child ``txmon ingest --partitions ...`` per share and sums their reports. The children fence each
other exactly like workers on different machines (the positions stored in PostgreSQL).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading

from ingestion.consumer import partitions_of
from txmon import kafka as kafka_clients
from txmon.config import Settings

PR_SET_PDEATHSIG = 1


class ProcessesError(RuntimeError):
    pass


def process_count(settings: Settings, partitions: int) -> int:
    """``ingest_processes``, or one per CPU core when it is 0; never more than the partitions."""
    wanted = settings.ingest_processes or os.cpu_count() or 1
    return max(1, min(wanted, partitions))


def topic_partitions(settings: Settings) -> list[int]:
    consumer = kafka_clients.consumer(settings)
    try:
        return partitions_of(consumer, settings)
    finally:
        consumer.close()


def split(partitions: list[int], n: int) -> list[list[int]]:
    return [partitions[i::n] for i in range(n) if partitions[i::n]]


def merge(summaries: list[dict]) -> dict:
    """One report for the children: counts summed, time from the first poll to the last commit of any."""
    out = {k: sum(s[k] for s in summaries) for k in
           ("consumed", "landed", "duplicates", "quarantined", "batches", "offset_conflicts")}
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


def _die_with_parent() -> None:
    """In the child: SIGKILL when the parent dies, so a killed `txmon ingest` leaves no worker behind."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_processes(child_args: list[list[str]], stop: threading.Event) -> dict:
    """Run one `txmon ingest --processes 1 ARGS` child per entry until they exit; ``stop`` ends them gracefully."""
    children = [
        subprocess.Popen([sys.executable, "-m", "txmon.cli", "ingest", "--processes", "1", *args],
                         stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
        for args in child_args
    ]
    outputs: list[str] = [""] * len(children)

    def collect(i: int) -> None:
        outputs[i] = children[i].stdout.read()

    readers = [threading.Thread(target=collect, args=(i,), daemon=True) for i in range(len(children))]
    for r in readers:
        r.start()
    while any(c.poll() is None for c in children):
        if stop.wait(0.2):
            for c in children:
                if c.poll() is None:
                    c.send_signal(signal.SIGTERM)
            for c in children:
                c.wait()
    for r in readers:
        r.join()
    failed = [c for c in children if c.returncode != 0]
    if failed:
        raise ProcessesError(f"{len(failed)} of {len(children)} ingest processes failed (exit {failed[0].returncode})")
    return merge([json.loads(out.strip().splitlines()[-1]) for out in outputs])


def ingest_for(seconds: float) -> dict:
    """`txmon ingest --max-seconds S` in a child process: lands continuously for that long, returns its report.

    For the Dagster sensor: the child has its own interpreter(s), so landing does not compete for the
    code server's GIL with the sensors that run dbt, and it cannot outlive its time bound.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "txmon.cli", "ingest", "--max-seconds", str(seconds)],
        capture_output=True, text=True, timeout=seconds + 120,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise ProcessesError(f"txmon ingest exited with {proc.returncode}: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])

