"""An ingest process's Prometheus metrics (the official client). The processes of one `txmon ingest` write
them to a shared directory (the client's multiprocess mode) and the parent serves their sum."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

from contracts.transaction import CONTRACT_FIELDS
from ingestion.sink import BatchResult, Message

log = logging.getLogger("txmon.ingest")
# The variable the client reads, in a child's environment, to write its values to files in that directory.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

LANDED = Counter("txmon_ingest_landed_events", "Events landed in staging.transactions")
DUPLICATES = Counter("txmon_ingest_duplicate_events", "Redelivered events recorded as duplicates of landed ones")
QUARANTINED = Counter("txmon_ingest_quarantined_events", "Messages quarantined, by the kind of reason", ["reason"])
BATCHES = Counter("txmon_ingest_batches", "Batches committed (rows and positions in one transaction)")
BATCH_SECONDS = Histogram(
    "txmon_ingest_batch_duration_seconds",
    "From handing a polled batch to the landing thread to its commit",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAG = Gauge(
    "txmon_ingest_consumer_lag_messages",
    "Messages on a partition after the last one this process committed (the broker's high watermark)",
    ["partition"],
    multiprocess_mode="mostrecent",
)
LAST_LANDED = Gauge(
    "txmon_ingest_last_landed_timestamp_seconds",
    "When this process last committed a batch that landed events (Unix time)",
    multiprocess_mode="max",
)

# A reason's kind: the field it names, or what kind of message it was. Reasons are free text (they quote
# values); a label takes one of these few words.
KINDS = (
    ("missing required", "missing_field"),
    ("not valid JSON", "not_json"),
    ("not a JSON object", "not_an_object"),
    ("empty message", "empty"),
    ("message of", "too_large"),
    ("contains a NUL", "nul_character"),
    ("nested more than", "too_deep"),
    ("the number", "number_out_of_range"),
    ("could not be", "unreadable"),
    ("PostgreSQL cannot store", "refused_by_database"),
)


def reason_kind(reason: str) -> str:
    """``"amount 'x' is not a decimal number"`` -> ``"amount"``; a label value from a small fixed set."""
    for prefix, kind in KINDS:
        if reason.startswith(prefix):
            return kind
    head = reason.lstrip("'\"$.[] ").split(" ", 1)[0].strip("'\":,.")
    for name in sorted(CONTRACT_FIELDS):
        if head == name or head.startswith(f"{name}.") or f"'{name}'" in reason[:60]:
            return name
    return "other"


def batch_committed(
    result: BatchResult, quarantined: list[tuple[Message, str]], seconds: float, ends: dict[int, int]
) -> None:
    """Count a committed batch: outcomes, the reasons of its ``quarantined`` messages, its duration, each
    partition's lag after it (``ends``: high watermarks)."""
    LANDED.inc(result.landed)
    DUPLICATES.inc(result.duplicates)
    BATCHES.inc()
    BATCH_SECONDS.observe(seconds)
    for _, reason in quarantined:
        QUARANTINED.labels(reason_kind(reason)).inc()
    for partition, (_, last) in result.offsets.items():
        if partition in ends:
            LAG.labels(str(partition)).set(max(0, ends[partition] - last - 1))
    if result.landed:
        LAST_LANDED.set(time.time())


def multiprocess_dir(state_dir: Path) -> Path:
    """A fresh directory of this process's own for its children's values; those of parents no longer
    running are removed (another `txmon ingest` running keeps its own)."""
    base = state_dir / "metrics"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob("ingest-*"):
        pid = old.name.removeprefix("ingest-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    path = base / f"ingest-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def serve(host: str, port: int, multiprocess_path: Path | None = None) -> bool:
    """Serve the metrics on ``host``:``port``: this process's, or the sum of the processes writing to
    ``multiprocess_path``. A port in use is logged, not fatal: landing matters more than its metrics."""
    registry = None
    if multiprocess_path is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(multiprocess_path))  # type: ignore[no-untyped-call]
    try:
        if registry is None:
            start_http_server(port, addr=host)
        else:
            start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("metrics not served on %s:%d: %s", host, port, exc)
        return False
    return True
