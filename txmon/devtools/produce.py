"""Send events to the transactions topic with an idempotent producer: as they come, paced by their moments, or
replayed from a file of events serialised beforehand."""
# A replay file holds the events ready to send, in time order: per event a fixed header (its moment on the stream's
# clock, whether it is a transaction's first event, the key's and the value's lengths) and then the key's and the
# value's bytes. Replaying it costs reading those bytes and handing them to the producer: no generation, no JSON.

from __future__ import annotations

import resource
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Producer

from txmon.core import kafka as kafka_clients
from txmon.core.settings import KafkaUser, Settings
from txmon.devtools.generate import Generated


class ProduceError(RuntimeError):
    pass


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    first_error: str | None = None
    seconds: float = 0.0
    transactions: int = 0  # first events among those sent
    behind_max_seconds: float = 0.0  # paced: the furthest the sending fell behind the events' moments


@dataclass
class ReplayReport(SendReport):
    """A replay: what was sent and acknowledged, when it began (epoch seconds), its CPU, and what the broker
    acknowledged with a timestamp inside the window asked for (seconds after the start)."""

    started_at: float = 0.0
    late_seconds: float = 0.0  # the start was this much after the moment asked for
    acknowledged: int = 0
    acknowledged_transactions: int = 0
    cpu_seconds: float = 0.0
    window: tuple[float, float] | None = None
    window_events: int = 0
    window_transactions: int = 0


REPLAY_HEADER = struct.Struct("<d?HI")  # moment, first event, key length (KEYLESS: none), value length
KEYLESS = 0xFFFF
READ_BLOCK = 4 << 20


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


def write_replay(path: Path, events: Iterable[Generated]) -> SendReport:
    """Serialise ``events`` (in time order) into a replay file; the report counts them (nothing is sent)."""
    report = SendReport()
    with open(path, "wb") as fh:
        for event in events:
            key = event.key or b""
            key_length = KEYLESS if event.key is None else len(key)
            if len(key) >= KEYLESS:
                raise ValueError(f"a key of {len(key)} bytes does not fit a replay file")
            fh.write(REPLAY_HEADER.pack(event.at, event.first, key_length, len(event.value)))
            fh.write(key)
            fh.write(event.value)
            report.sent += 1
            report.transactions += event.first
            report.seconds = event.at
    return report


def read_replay(path: Path) -> Iterator[Generated]:
    """The events of a replay file, read in large blocks."""
    size = REPLAY_HEADER.size
    with open(path, "rb") as fh:
        buffer = b""
        pos = 0
        while True:
            if len(buffer) - pos < size:
                more = fh.read(READ_BLOCK)
                if not more:
                    if len(buffer) > pos:
                        raise ValueError(f"{path}: truncated replay file")
                    return
                buffer, pos = buffer[pos:] + more, 0
                continue
            at, first, key_length, value_length = REPLAY_HEADER.unpack_from(buffer, pos)
            keyless = key_length == KEYLESS
            end = pos + size + (0 if keyless else key_length) + value_length
            if end > len(buffer):
                more = fh.read(max(READ_BLOCK, end - len(buffer)))
                if not more:
                    raise ValueError(f"{path}: truncated replay file")
                buffer, pos = buffer[pos:] + more, 0
                continue
            start = pos + size
            key = None if keyless else buffer[start : start + key_length]
            value_start = start if keyless else start + key_length
            yield Generated(key, buffer[value_start:end], at, first)
            pos = end


def _pump(
    producer: Producer,
    topic: str,
    events: Iterable[Generated],
    report: SendReport,
    *,
    paced: bool,
    on_first: Callable,
    on_other: Callable,
) -> None:
    """Produce every event (paced: at its moment after the call), then wait until each is acknowledged or failed."""
    started = time.monotonic()
    for event in events:
        if paced:
            ahead = event.at - (time.monotonic() - started)
            if ahead > 0.001:
                time.sleep(ahead)
            elif -ahead > report.behind_max_seconds:
                report.behind_max_seconds = -ahead
        callback = on_first if event.first else on_other
        while True:
            try:
                producer.produce(topic, value=event.value, key=event.key, on_delivery=callback)
                break
            except BufferError:
                producer.poll(0.05)
        report.sent += 1
        report.transactions += event.first
        if report.sent % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        report.failed += remaining
        report.first_error = report.first_error or f"{remaining} messages not acknowledged within 120 s"
    report.seconds = time.monotonic() - started


def send(settings: Settings, events: Iterable[Generated], *, paced: bool = False) -> SendReport:
    """Produce every event and wait until each is acknowledged (or failed).

    ``paced``: each event is sent at its moment (``Generated.at``, seconds after the call); otherwise they go as fast
    as the broker takes them.
    """
    report = SendReport()

    def delivered(err, _msg):
        if err is not None:
            report.failed += 1
            report.first_error = report.first_error or str(err)

    _pump(
        kafka_clients.producer(settings, user=KafkaUser.PRODUCER),
        settings.topic,
        events,
        report,
        paced=paced,
        on_first=delivered,
        on_other=delivered,
    )
    return report


def replay(
    settings: Settings, path: Path, *, start_at: float | None = None, window: tuple[float, float] | None = None
) -> ReplayReport:
    """Send a replay file's events at their moments, from ``start_at`` (epoch seconds; default now).

    The report counts what the broker acknowledged, in all and with a message timestamp inside ``window`` (seconds
    after the start), and the process's CPU seconds (every thread, the producer's own included) from the start to the
    last acknowledgement.
    """
    report = ReplayReport(window=window)
    producer = kafka_clients.producer(settings, user=KafkaUser.PRODUCER)
    bounds = [0.0, 0.0]

    def acknowledged(err, msg, first: bool) -> None:
        if err is not None:
            report.failed += 1
            report.first_error = report.first_error or str(err)
            return
        report.acknowledged += 1
        report.acknowledged_transactions += first
        if window is not None:
            at = msg.timestamp()[1] / 1000
            if bounds[0] <= at < bounds[1]:
                report.window_events += 1
                report.window_transactions += first

    def on_first(err, msg):
        acknowledged(err, msg, True)

    def on_other(err, msg):
        acknowledged(err, msg, False)

    if start_at is not None and start_at > time.time():
        time.sleep(start_at - time.time())
    report.started_at = time.time()
    report.late_seconds = max(0.0, report.started_at - start_at) if start_at is not None else 0.0
    if window is not None:
        bounds[:] = [report.started_at + window[0], report.started_at + window[1]]
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    _pump(producer, settings.topic, read_replay(path), report, paced=True, on_first=on_first, on_other=on_other)
    after = resource.getrusage(resource.RUSAGE_SELF)
    report.cpu_seconds = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return report
