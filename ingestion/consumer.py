"""The Kafka side of ingestion: consume micro-batches, validate, hand them to the sinks.

The consumer's position comes from PostgreSQL (``staging.kafka_offsets``), never from Kafka's
committed offsets: partitions are assigned explicitly (all of the topic, or a given subset, for
static scale-out) or through a consumer group whose assignments are seeked to the stored
positions. Offsets are committed to Kafka too, after the database commit, only so that Kafka's
tools show the lag.

Used by ``txmon ingest`` (workers), ``txmon ingest --until-idle`` and the Dagster sensor; it has
no Dagster import.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from contracts.transaction import EventValidator, InvalidEvent
from ingestion.sink import BatchResult, Message, OffsetConflict, WarehouseSink
from txmon import kafka as kafka_clients
from txmon.config import Settings
from txmon.warehouse import migrate

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    pass


@dataclass
class IngestReport:
    """What one run of the ingestor did."""

    total: BatchResult = field(default_factory=BatchResult)
    batches: int = 0
    conflicts: int = 0
    first_poll: float | None = None  # time.monotonic() of the first message received
    last_commit: float | None = None  # time.monotonic() of the last database commit
    first_poll_at: float | None = None  # the same two instants as Unix time, comparable across processes
    last_commit_at: float | None = None

    @property
    def consumed(self) -> int:
        return self.total.landed + self.total.duplicates + self.total.quarantined

    @property
    def seconds(self) -> float:
        if self.first_poll is None or self.last_commit is None:
            return 0.0
        return self.last_commit - self.first_poll

    @property
    def events_per_second(self) -> float:
        return self.consumed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        return {
            "consumed": self.consumed,
            "landed": self.total.landed,
            "duplicates": self.total.duplicates,
            "quarantined": self.total.quarantined,
            "batches": self.batches,
            "offset_conflicts": self.conflicts,
            "processes": 1,
            "seconds_first_poll_to_last_commit": round(self.seconds, 3),
            "first_poll_at": self.first_poll_at,
            "last_commit_at": self.last_commit_at,
            "events_per_second": round(self.events_per_second, 1),
            "slices": {f"{d.isoformat()}|{r}": n for (d, r), n in sorted(self.total.slices.items())},
        }


def produced_at(msg) -> datetime | None:
    """The message's Kafka timestamp (UTC), or None when it has none."""
    kind, ms = msg.timestamp()
    return datetime.fromtimestamp(ms / 1000, UTC) if kind and ms >= 0 else None


def partitions_of(consumer: Consumer, settings: Settings) -> list[int]:
    """The partition numbers of the transactions topic, or IngestError when it does not exist."""
    meta = consumer.list_topics(settings.topic, timeout=10).topics.get(settings.topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise IngestError(f"topic {settings.topic!r} not found at {settings.kafka_bootstrap}: run `txmon services up`")
    return sorted(meta.partitions)


class Ingestor:
    """Moves messages from the topic into PostgreSQL, exactly once, in bounded micro-batches."""

    def __init__(
        self,
        settings: Settings,
        *,
        partitions: list[int] | None = None,
        group: bool = False,
        worker: str | None = None,
    ):
        if group and partitions is not None:
            raise IngestError("choose either explicit partitions or a consumer group, not both")
        self.settings = settings
        self.topic = settings.topic
        self.group = group
        self.wanted_partitions = partitions
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.validator = EventValidator(settings.regions, settings.currencies)
        migrate(settings)
        databases = settings.databases()
        self.sinks = [
            WarehouseSink(dsn, self.topic, regions, home=(dsn == settings.warehouse_dsn), worker=self.worker)
            for dsn, regions in databases.items()
        ]
        today = datetime.now(UTC).date()
        for sink in self.sinks:
            sink.ensure_days(today + timedelta(days=d) for d in range(-1, 4))
        self.consumer = kafka_clients.consumer(settings)
        self.assigned: list[int] = []
        self._quarantine_producer = None
        self._start()

    # ---------------------------------------------------------------- assignment
    def _topic_partitions(self) -> list[int]:
        return partitions_of(self.consumer, self.settings)

    def _positions(self, partitions: list[int]) -> dict[int, int | None]:
        """Resume point per partition: the smallest position over all databases."""
        positions: dict[int, int | None] = dict.fromkeys(partitions, None)
        per_sink = [sink.load_positions(partitions) for sink in self.sinks]
        for p in partitions:
            stored = [s[p] for s in per_sink]
            positions[p] = None if any(v is None for v in stored) else min(stored)
        return positions

    def _seek_list(self, partitions: list[int]) -> list[TopicPartition]:
        positions = self._positions(partitions)
        return [
            TopicPartition(self.topic, p, OFFSET_BEGINNING if positions[p] is None else positions[p])
            for p in partitions
        ]

    def _start(self) -> None:
        if self.group:
            def on_assign(consumer, tps):
                self.assigned = sorted(tp.partition for tp in tps)
                consumer.assign(self._seek_list(self.assigned))

            def on_revoke(consumer, tps):
                self.assigned = []
                consumer.unassign()

            self.consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
            return
        available = self._topic_partitions()
        wanted = available if self.wanted_partitions is None else sorted(set(self.wanted_partitions))
        missing = sorted(set(wanted) - set(available))
        if missing:
            raise IngestError(f"topic {self.topic!r} has no partition(s) {missing} (it has {len(available)})")
        self.assigned = wanted
        self.consumer.assign(self._seek_list(wanted))

    def _reseek(self) -> None:
        """After a fence: forget the in-flight batch and restart from the stored positions."""
        if self.assigned:
            for tp in self._seek_list(self.assigned):
                self.consumer.seek(tp)

    # ---------------------------------------------------------------- batches
    def _poll_batch(self, stop: threading.Event) -> list[Message]:
        max_events = self.settings.batch_max_events
        deadline = time.monotonic() + self.settings.batch_max_seconds
        batch: list[Message] = []
        parse = self.validator.parse
        while len(batch) < max_events and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for msg in self.consumer.consume(num_messages=min(10_000, max_events - len(batch)), timeout=remaining):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise IngestError(f"Kafka consumer failed: {err.str()}")
                    log.warning("kafka: %s", err.str())
                    continue
                value = msg.value()
                m = Message(msg.partition(), msg.offset(), msg.key(), value, produced_at(msg))
                try:
                    m.event = parse(value)
                except InvalidEvent as exc:
                    m.reason = exc.reason
                batch.append(m)
        return batch

    def _land(self, batch: list[Message]) -> BatchResult:
        result = BatchResult()
        for sink in self.sinks:
            result.add(sink.land(batch))
        return result

    def _after_commit(self, batch: list[Message], result: BatchResult) -> None:
        self.consumer.commit(
            offsets=[TopicPartition(self.topic, p, last + 1) for p, (_, last) in result.offsets.items()],
            asynchronous=True,
        )
        rejected = [m for m in batch if m.reason is not None]
        if rejected:
            # Best effort, after the commit: the table is the record; the topic lets producers listen.
            if self._quarantine_producer is None:
                self._quarantine_producer = kafka_clients.producer(self.settings)
            for m in rejected:
                self._quarantine_producer.produce(
                    self.settings.quarantine_topic,
                    key=m.key,
                    value=m.value,
                    headers={
                        "txmon.reason": m.reason.encode(),
                        "txmon.source": f"{self.topic}/{m.partition}/{m.offset}".encode(),
                    },
                )
            self._quarantine_producer.poll(0)

    def caught_up(self) -> bool:
        """True when every assigned partition is landed up to its current end."""
        if not self.assigned:
            return False
        positions = self._positions(self.assigned)
        for p in self.assigned:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=10, cached=False
            )
            if (positions[p] if positions[p] is not None else low) < high:
                return False
        return True

    def run(
        self,
        *,
        until_idle: bool = False,
        max_seconds: float | None = None,
        stop: threading.Event | None = None,
        on_batch=None,
    ) -> IngestReport:
        """Land batches until stopped, until caught up (``until_idle``) or ``max_seconds`` passed.

        Polling and validating the next batch overlaps with writing the previous one: the writes
        run on one landing thread, one batch at a time and in order (while PostgreSQL works, the
        thread waits without holding the GIL). A batch polled while the one before it was fenced
        comes from stale positions and is dropped; polling resumes from the stored positions.
        """
        stop = stop or threading.Event()
        report = IngestReport()
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="txmon-land") as lander:
            landing: tuple[list[Message], Future] | None = None
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                batch = self._poll_batch(stop)
                if batch and report.first_poll is None:
                    report.first_poll, report.first_poll_at = time.monotonic(), time.time()
                if landing is not None:
                    if not self._finish(landing, report, on_batch):
                        batch = []  # polled from positions another worker has moved past
                    landing = None
                if batch:
                    landing = (batch, lander.submit(self._land, batch))
                elif until_idle and self.caught_up():
                    break
            if landing is not None:
                self._finish(landing, report, on_batch)
        return report

    def _finish(self, landing: tuple[list[Message], Future], report: IngestReport, on_batch) -> bool:
        """Wait for a batch's commit and account for it; False when it was fenced (nothing written)."""
        batch, future = landing
        try:
            result = future.result()
        except OffsetConflict as exc:
            log.warning("%s; re-reading positions", exc)
            report.conflicts += 1
            self._reseek()
            return False
        report.last_commit, report.last_commit_at = time.monotonic(), time.time()
        report.batches += 1
        report.total.add(result)
        self._after_commit(batch, result)
        if on_batch is not None:
            on_batch(result)
        return True

    def close(self) -> None:
        if self._quarantine_producer is not None:
            self._quarantine_producer.flush(10)
        try:
            self.consumer.close()
        except KafkaException:
            pass
        for sink in self.sinks:
            sink.close()
