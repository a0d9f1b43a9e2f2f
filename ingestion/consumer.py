"""The Kafka side of ingestion: consume micro-batches, validate, hand them to the sinks."""
# The consumer's position comes from PostgreSQL (``staging.kafka_offsets``), never from Kafka's committed offsets:
# partitions are assigned explicitly (all of the topic, or a given subset, for static scale-out) or through a consumer
# group whose assignments are seeked to the stored positions. Offsets are committed to Kafka too, after the database
# commit, only so that Kafka's tools show the lag.
#
# Outages: a lost PostgreSQL connection (a restart, a fail-over, a terminated backend, a timeout) drops the batch in
# flight, reconnects with bounded exponential backoff and jitter, reloads the stored positions and resumes from them, so
# a batch whose COMMIT outcome is unknown is neither lost nor landed twice. A broker that does not answer is waited for
# the same way (librdkafka reconnects by itself). One log line when an outage starts, one when it ends; after
# ``outage_budget_seconds`` of one outage the worker gives up with ``IngestError``. Stored positions that do not belong
# to the topic as it is now stop the worker at once (``PositionError``).
#
# Used by ``txmon ingest`` (workers), ``txmon ingest --until-idle`` and the Dagster sensor's lander; it has no Dagster
# import.

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage

from ingestion import metrics
from ingestion import positions as position_checks
from ingestion.positions import PositionError, Source
from ingestion.sink import BatchResult, Message, OffsetConflict, WarehouseSink
from ingestion.validate import kafka_timestamp, to_message, validator_for
from txmon.core import kafka as kafka_clients
from txmon.core.db import refused
from txmon.core.errors import first_line
from txmon.core.settings import KafkaUser, Role, Settings
from txmon.core.warehouse import one_url_each, require_migrated

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL failures that are no message's fault and pass: retried from the stored positions.
PG_TRANSIENT = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.IdleInTransactionSessionTimeout,
    psycopg.errors.ReadOnlySqlTransaction,  # reconnected to a standby or a demoted primary during a fail-over
)
# Kafka error codes that mean "the broker is not reachable right now" (librdkafka retries by itself).
KAFKA_TRANSIENT = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError._WAIT_COORD,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}
# The ingestion consumer's prefetch is bounded in bytes too (librdkafka's local queue).
QUEUE_KBYTES = 32_768
# The largest message the broker delivers by default (message.max.bytes), key included.
LARGEST_MESSAGE_BYTES = 1_049_600
# How often a running worker re-reads the topic's identity (a topic recreated under it).
SOURCE_CHECK_SECONDS = 60.0


class IngestError(RuntimeError):
    pass


class Outage:
    """One dependency's outage: logged once when it starts and once when it ends; bounded backoff
    with full jitter between attempts; IngestError once it lasted longer than the budget."""

    def __init__(self, what: str, budget: float, *, first_delay: float = 0.5, max_delay: float = 15.0):
        self.what = what
        self.budget = budget
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.started: float | None = None
        self.attempts = 0
        self.outages = 0  # how many outages this worker rode out

    @property
    def active(self) -> bool:
        return self.started is not None

    def failed(self, error: object) -> float:
        """Note a failure; the seconds to wait before the next attempt."""
        now = time.monotonic()
        detail = first_line(error)
        if self.started is None:
            self.started, self.attempts = now, 0
            log.warning("%s unreachable (%s); retrying for up to %.0fs", self.what, detail, self.budget)
        elif now - self.started > self.budget:
            raise IngestError(
                f"{self.what} unreachable for {now - self.started:.0f}s, beyond the outage budget of "
                f"{self.budget:.0f}s (TXMON_OUTAGE_BUDGET_SECONDS); last error: {detail}"
            )
        delay = min(self.max_delay, self.first_delay * 2**self.attempts)
        self.attempts += 1
        return random.uniform(delay / 2, delay)

    def recovered(self) -> None:
        if self.started is not None:
            log.warning(
                "%s reachable again after %.1fs; resuming from the stored positions",
                self.what,
                time.monotonic() - self.started,
            )
            self.started, self.attempts = None, 0
            self.outages += 1


@dataclass
class IngestReport:
    """What one run of the ingestor did."""

    total: BatchResult = field(default_factory=BatchResult)
    batches: int = 0
    conflicts: int = 0
    outages: int = 0  # PostgreSQL or Kafka outages ridden out
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
            "outages": self.outages,
            "processes": 1,
            "seconds_first_poll_to_last_commit": round(self.seconds, 3),
            "first_poll_at": self.first_poll_at,
            "last_commit_at": self.last_commit_at,
            "events_per_second": round(self.events_per_second, 1),
            "slices": {f"{d.isoformat()}|{r}": n for (d, r), n in sorted(self.total.slices.items())},
        }


def produced_at(msg: KafkaMessage) -> datetime | None:
    """The message's Kafka timestamp (UTC), or None when it has none."""
    return kafka_timestamp(*msg.timestamp())


def partitions_of(consumer: Consumer, settings: Settings) -> list[int]:
    """The partition numbers of the transactions topic, or IngestError when it does not exist."""
    meta = consumer.list_topics(settings.topic, timeout=10).topics.get(settings.topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise IngestError(f"topic {settings.topic!r} not found at {settings.kafka_bootstrap}: run `txmon services up`")
    return sorted(meta.partitions)


def check_databases(settings: Settings) -> None:
    """Every database a worker lands in is migrated and named by one URL only (MigrationError if not)."""
    one_url_each({dsn: require_migrated(settings.as_role(dsn, Role.INGEST)) for dsn in settings.databases()})


class Ingestor:
    """Moves messages from the topic into PostgreSQL, exactly once, in bounded micro-batches."""

    def __init__(
        self,
        settings: Settings,
        *,
        partitions: list[int] | None = None,
        group: bool = False,
        worker: str | None = None,
        stop: threading.Event | None = None,
    ):
        if group and partitions is not None:
            raise IngestError("choose either explicit partitions or a consumer group, not both")
        self.settings = settings
        self.topic = settings.topic
        self.group = group
        self.wanted_partitions = partitions
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.stop = stop or threading.Event()
        self.validator = validator_for(settings)
        self.pg = Outage("PostgreSQL", settings.outage_budget_seconds)
        self.kafka = Outage("Kafka", settings.outage_budget_seconds)
        self.sinks: list[WarehouseSink] = []
        self.assigned: list[int] = []
        self.source = Source(None, None)
        self._source_checked = 0.0
        self._quarantine_producer: Producer | None = None
        self._regional = {  # the regions whose databases are not the home one
            region
            for dsn, regions in settings.databases().items()
            if dsn != settings.warehouse_dsn
            for region in regions
        }
        self.consumer = kafka_clients.consumer(
            settings,
            user=KafkaUser.INGEST,
            **{
                "auto.offset.reset": "error",
                "queued.max.messages.kbytes": QUEUE_KBYTES,
                "error_cb": self._client_error,
            },
        )
        self.admin = kafka_clients.admin(settings, user=KafkaUser.INGEST)
        self._rebalanced = False  # set by the group callbacks: the batch being polled is stale
        # Set when what the consumer fetches next may not start at the stored positions (a rebalance in the
        # middle of a batch, a group assignment whose positions could not be read): the run loop seeks
        # back to the stored positions before polling again. A PositionError found meanwhile is kept here.
        self._held: bool | PositionError = False
        self._disconnected = True  # the sinks are opened by the first attempt
        self._retrying(self._start)

    # ---------------------------------------------------------------- outages
    def _retrying(self, action: Callable[[], T]) -> T:
        """Run ``action`` until it gets through an outage of PostgreSQL or Kafka (or the budget ends).

        After a PostgreSQL failure the sinks are reopened before the next attempt."""
        while True:
            try:
                if self._disconnected:
                    self._connect()
                    self._disconnected = False
                result = action()
            except PG_TRANSIENT as exc:
                if refused(exc):
                    raise IngestError(f"PostgreSQL refused the ingestion role: {first_line(exc)}") from None
                self._disconnected = True
                delay = self.pg.failed(exc)
            except KafkaException as exc:
                delay = self.kafka.failed(exc)
            else:
                self.pg.recovered()
                self.kafka.recovered()
                return result
            if self.stop.wait(delay):
                raise IngestError(f"stopped while waiting for {'PostgreSQL' if self.pg.active else 'Kafka'}")

    def _connect(self) -> None:
        """(Re)open one sink per database with the schema up to date; forget everything in memory."""
        for sink in self.sinks:
            sink.close()
        self.sinks = []
        databases = self.settings.databases()
        sinks = []
        try:
            check_databases(self.settings)
            for dsn, regions in databases.items():
                ingest = self.settings.as_role(dsn, Role.INGEST)
                sinks.append(
                    WarehouseSink(
                        ingest,
                        self.topic,
                        regions,
                        home=(dsn == self.settings.warehouse_dsn),
                        others=set(self.settings.regions) - set(regions),
                        worker=self.worker,
                        raw_events=self.settings.raw_event_retention_days > 0,
                    )
                )
            today = datetime.now(UTC).date()
            for sink in sinks:
                sink.ensure_days(today + timedelta(days=d) for d in range(-1, 4))  # ahead, out of the landing path
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        self.sinks = sinks

    def _recover(self, exc: BaseException) -> None:
        """After a lost connection: wait, reconnect, and restart from the positions PostgreSQL stored."""
        if isinstance(exc, KafkaException):
            delay = self.kafka.failed(exc)
        else:
            self._disconnected = True
            delay = self.pg.failed(exc)
        if not self.stop.wait(delay):
            self._retrying(self._reseek)

    # ---------------------------------------------------------------- assignment
    def _topic_partitions(self) -> list[int]:
        return partitions_of(self.consumer, self.settings)

    def _positions(self, partitions: list[int]) -> dict[int, int | None]:
        """Resume point per partition: the smallest position over all databases."""
        positions: dict[int, int | None] = dict.fromkeys(partitions, None)
        per_sink = [sink.load_positions(partitions) for sink in self.sinks]
        for p in partitions:
            stored = [s[p] for s in per_sink]
            known = [v for v in stored if v is not None]
            positions[p] = min(known) if len(known) == len(stored) else None
        return positions

    def _verify(self, stored: dict[int, int | None]) -> None:
        """PositionError when the stored positions do not belong to the topic as it is now."""
        sources = set().union(*(sink.load_sources() for sink in self.sinks))
        self.source, found = position_checks.inspect(self.consumer, self.admin, self.topic, stored, sources)
        self._source_checked = time.monotonic()
        if found:
            raise PositionError(
                f"not resuming {self.topic}: {'; '.join(found)}. Nothing was skipped or re-read; see "
                "docs/operations.md, 'When positions do not match the topic'"
            )

    def _check_source(self) -> None:
        """PositionError when the topic's identity changed since the positions were stored."""
        self._verify({})

    def _seek_list(self, partitions: list[int]) -> list[TopicPartition]:
        positions = self._positions(partitions)
        self._verify(positions)
        return [
            TopicPartition(self.topic, p, OFFSET_BEGINNING if (position := positions[p]) is None else position)
            for p in partitions
        ]

    def _start(self) -> None:
        if self.group:

            def on_assign(consumer: Consumer, tps: list[TopicPartition]) -> None:
                self.assigned = sorted(tp.partition for tp in tps)
                self._rebalanced = True
                try:
                    consumer.assign(self._seek_list(self.assigned))
                except Exception as exc:  # never let Kafka choose the offsets: hold the partitions until read
                    consumer.assign(tps)
                    consumer.pause(tps)
                    self._held = exc if isinstance(exc, PositionError) else True

            def on_revoke(consumer: Consumer, tps: list[TopicPartition]) -> None:
                self.assigned = []
                self._rebalanced = True
                consumer.unassign()

            self.consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
            return
        available = self._topic_partitions()
        wanted = available if self.wanted_partitions is None else sorted(set(self.wanted_partitions))
        missing = sorted(set(wanted) - set(available))
        if missing:
            raise IngestError(f"topic {self.topic!r} has no partition(s) {missing} (it has {len(available)})")
        self.consumer.assign(self._seek_list(wanted))
        self.assigned = wanted

    def _reseek(self) -> None:
        """Forget what was polled and restart from the stored positions (after a fence or an outage).

        Always a round trip to both PostgreSQL and Kafka, so that a success means both answer."""
        if not self.assigned:
            self.consumer.list_topics(self.topic, timeout=10)
            for sink in self.sinks:
                sink.ping()
            return
        seek_list = self._seek_list(self.assigned)
        if self.group:
            for tp in seek_list:
                self.consumer.seek(tp)
            self.consumer.resume(seek_list)
        else:
            self.consumer.assign(seek_list)  # a new assignment drops whatever was fetched before

    # ---------------------------------------------------------------- batches
    def _client_error(self, err: KafkaError) -> None:
        """librdkafka's client-wide errors (broker connections): note the outage; the run loop waits it out."""
        if err.code() in KAFKA_TRANSIENT and not self.kafka.active:
            try:
                self.kafka.failed(err.str())
            except IngestError:
                pass  # the budget is enforced by the run loop

    def _kafka_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if code in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
            raise PositionError(
                f"Kafka has no message at the stored position of {self.topic} ({err.str()}): the topic was "
                "recreated or retention removed messages before they were consumed. Nothing was skipped; see "
                "docs/operations.md, 'When positions do not match the topic'"
            )
        if err.fatal():
            raise IngestError(f"Kafka consumer failed: {err.str()}")
        if code in KAFKA_TRANSIENT:
            self.kafka.failed(err.str())  # logs once per outage; raises past the budget
            return
        log.warning("kafka: %s", err.str())

    def _poll_batch(self) -> list[Message]:
        """Up to ``batch_max_events`` messages or ``batch_max_bytes`` bytes, whichever comes first."""
        settings = self.settings
        max_events, max_bytes = settings.batch_max_events, settings.batch_max_bytes
        deadline = time.monotonic() + settings.batch_max_seconds
        batch: list[Message] = []
        size = 0
        validator = self.validator
        while len(batch) < max_events and size < max_bytes and not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # One call may return as many messages as it is asked for, however long they are (librdkafka keeps
            # filling the list while messages arrive): ask for no more than the bytes left could hold at the
            # largest message size, so a batch never exceeds the byte bound by more than one message.
            wanted = max(1, min(10_000, max_events - len(batch), (max_bytes - size) // LARGEST_MESSAGE_BYTES))
            self._rebalanced = False
            records = self.consumer.consume(num_messages=wanted, timeout=remaining)
            if self._rebalanced:  # the assignment changed: drop what was polled, seek back to the positions
                self._held = self._held or True
                return []
            for msg in records:
                err = msg.error()
                if err is not None:
                    self._kafka_error(err)
                    continue
                # A consumed message without an error has a partition and an offset (typed optional by the library).
                m = to_message(validator, msg.partition(), msg.offset(), msg.key(), msg.value(), produced_at(msg))  # type: ignore[arg-type]
                size += m.size
                batch.append(m)
        if batch:
            self.kafka.recovered()
        return batch

    def _land(self, batch: list[Message]) -> BatchResult:
        result = BatchResult()
        source = self.source.as_tuple()
        for sink in self.sinks:
            result.add(sink.land(batch, source))
        return result

    def _after_commit(self, result: BatchResult, quarantined: list[tuple[Message, str]]) -> None:
        try:
            self.consumer.commit(
                offsets=[TopicPartition(self.topic, p, last + 1) for p, (_, last) in result.offsets.items()],
                asynchronous=True,
            )
        except KafkaException:
            pass  # only for Kafka's own lag tools: PostgreSQL holds the positions
        # A message kept in a regional database (it names that region) is not copied to the shared topic.
        rejected = [(m, reason) for m, reason in quarantined if m.region not in self._regional]
        if not rejected:
            return
        # Best effort, after the commit: the table is the record; the topic lets producers listen.
        try:
            if self._quarantine_producer is None:
                self._quarantine_producer = kafka_clients.producer(self.settings, user=KafkaUser.INGEST)
            for m, reason in rejected:
                try:
                    self._quarantine_producer.produce(
                        self.settings.quarantine_topic,
                        key=m.key,
                        value=m.value,
                        headers={
                            "txmon.reason": reason.encode("utf-8", "backslashreplace"),
                            "txmon.source": f"{self.topic}/{m.partition}/{m.offset}".encode(),
                        },
                    )
                except BufferError:
                    self._quarantine_producer.poll(1)
                except KafkaException as exc:  # e.g. a message too large for the quarantine topic
                    log.warning("quarantine topic: %s/%s/%s not copied: %s", self.topic, m.partition, m.offset, exc)
            self._quarantine_producer.poll(0)
        except KafkaException as exc:
            log.warning("quarantine topic: copies not sent: %s", exc)

    def _high_watermarks(self, result: BatchResult) -> dict[int, int]:
        """The broker's high watermark of each partition in the batch, as the consumer last fetched it (no request)."""
        ends = {}
        for p in result.offsets:
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                ends[p] = high
        return ends

    def caught_up(self) -> bool:
        """True when every assigned partition is landed up to its current end."""
        if not self.assigned:
            return False
        positions = self._positions(self.assigned)
        for p in self.assigned:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10, cached=False)
            position = positions[p]
            if (position if position is not None else low) < high:
                return False
        return True

    def _idle(self, until_idle: bool) -> bool:
        """Between batches with nothing polled: True when done (caught up, with ``until_idle``)."""
        if self.kafka.active:
            # Nothing arrives while the broker is away: ask it directly whether it is back.
            self.consumer.list_topics(self.topic, timeout=2)
            self.kafka.recovered()
        if time.monotonic() - self._source_checked > SOURCE_CHECK_SECONDS and self.assigned:
            self._verify(self._positions(self.assigned))
        return until_idle and self.caught_up()

    def run(
        self,
        *,
        until_idle: bool = False,
        max_seconds: float | None = None,
        on_batch: Callable[[BatchResult], object] | None = None,
    ) -> IngestReport:
        """Land batches until stopped, until caught up (``until_idle``) or ``max_seconds`` passed.

        Polling and validating the next batch overlaps with writing the previous one: the writes
        run on one landing thread, one batch at a time and in order (while PostgreSQL works, the
        thread waits without holding the GIL). A batch polled while the one before it was fenced,
        or lost with its connection, comes from stale positions and is dropped; polling resumes
        from the stored positions.
        """
        stop = self.stop
        report = IngestReport()
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="txmon-land") as lander:
            landing: tuple[list[Message], Future[BatchResult], float] | None = None
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                if self._held and landing is None:
                    held, self._held = self._held, False
                    if isinstance(held, PositionError):
                        raise held
                    self._retrying(self._reseek)
                try:
                    batch = self._poll_batch()
                except (*PG_TRANSIENT, KafkaException) as exc:
                    batch = []
                    if landing is None:
                        self._recover(exc)
                    else:
                        self._held = self._held or True  # seek back once the batch in flight is settled
                if batch and report.first_poll is None:
                    report.first_poll, report.first_poll_at = time.monotonic(), time.time()
                if landing is not None:
                    if not self._finish(landing, report, on_batch):
                        batch = []  # polled from positions another worker, or an outage, has moved
                    landing = None
                if batch:
                    if time.monotonic() - self._source_checked > SOURCE_CHECK_SECONDS:
                        try:
                            self._check_source()  # a busy worker too: a topic recreated under it stops it
                        except (*PG_TRANSIENT, KafkaException):
                            pass  # checked again on the next batch; the landing meets the outage itself
                    landing = (batch, lander.submit(self._land, batch), time.monotonic())
                    continue
                try:
                    if self._idle(until_idle):
                        break
                except (*PG_TRANSIENT, KafkaException) as exc:
                    self._recover(exc)
            if landing is not None:
                self._finish(landing, report, on_batch)
        report.outages = self.pg.outages + self.kafka.outages
        return report

    def _finish(
        self,
        landing: tuple[list[Message], Future[BatchResult], float],
        report: IngestReport,
        on_batch: Callable[[BatchResult], object] | None,
    ) -> bool:
        """Wait for a batch's commit and account for it; False when it was not written (or not known to be)."""
        batch, future, handed = landing
        try:
            result = future.result()
        except OffsetConflict as exc:
            log.warning("%s; re-reading positions", exc)
            report.conflicts += 1
            self._retrying(self._reseek)
            return False
        except PG_TRANSIENT as exc:
            self._recover(exc)  # the stored positions decide whether the batch's COMMIT went through
            return False
        report.last_commit, report.last_commit_at = time.monotonic(), time.time()
        report.batches += 1
        report.total.add(result)
        # The batch's quarantined messages with their reasons, found once for the metrics and the topic copy.
        quarantined = [
            (m, reason) for m in batch if (reason := m.reason or result.refused.get((m.partition, m.offset)))
        ]
        metrics.batch_committed(result, quarantined, time.monotonic() - handed, self._high_watermarks(result))
        self._after_commit(result, quarantined)
        if on_batch is not None:
            on_batch(result)
        return True

    def close(self) -> None:
        if self._quarantine_producer is not None:
            self._quarantine_producer.flush(10)
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            pass
        for sink in self.sinks:
            sink.close()
