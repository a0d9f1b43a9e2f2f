"""Send events to the transactions topic with an idempotent producer."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from txmon.core import kafka as kafka_clients
from txmon.core.settings import Settings
from txmon.devtools.generate import Generated


class ProduceError(RuntimeError):
    pass


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    first_error: str | None = None
    seconds: float = 0.0


def key_of(line: bytes) -> bytes | None:
    """The contract's key: the event's account_id as UTF-8, or none when the line is not JSON."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    account = event.get("account_id") if isinstance(event, dict) else None
    return account.encode() if isinstance(account, str) else None


def read_lines(path: Path) -> Iterator[Generated]:
    """Each non-blank line of a JSON-lines file, as it is (only the line ending removed)."""
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield Generated(key_of(line), line)


def send(settings: Settings, events: Iterable[Generated], *, tps: float | None = None) -> SendReport:
    """Produce every event and wait until each is acknowledged (or failed).

    With ``tps`` the events are paced to that rate; otherwise they go as fast as the broker takes them.
    """
    report = SendReport()
    producer = kafka_clients.producer(settings)

    def delivered(err, _msg):
        if err is not None:
            report.failed += 1
            report.first_error = report.first_error or str(err)

    started = time.monotonic()
    topic = settings.topic
    for i, event in enumerate(events):
        if tps is not None and i % 100 == 0:
            ahead = i / tps - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(topic, value=event.value, key=event.key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
        report.sent += 1
    remaining = producer.flush(120)
    if remaining:
        report.failed += remaining
        report.first_error = report.first_error or f"{remaining} messages not acknowledged within 120 s"
    report.seconds = time.monotonic() - started
    return report
