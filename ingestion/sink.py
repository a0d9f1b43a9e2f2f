"""Land one micro-batch of consumed messages in one PostgreSQL database, exactly once."""
# In a single transaction the sink
# 1. checks that the stored Kafka positions are still the ones this worker started from (a fence: if another worker got
#    there first, nothing is written and ``OffsetConflict`` is raised),
# 2. lands the valid events in the partitioned ``staging.transactions``, each event once. The identity of an event is
#    (transaction_id, status), whatever its time or amount: ``staging.event_identities`` holds one row per identity and
#    points at the one landed event; a redelivery is recorded in ``staging.duplicate_transactions`` instead.
#    Redeliveries the sink can see (twice in the batch, or an event of the batch it committed last) are set aside in
#    memory and the identities of the rest are COPYed straight into ``staging.event_identities`` inside a savepoint,
#    then the events into ``staging.transactions``; when PostgreSQL still finds a stored identity (a replay older than
#    the sink's memory, another worker's event), the savepoint is rolled back and the batch goes the careful way: COPY
#    into a session-local scratch table, then ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` the identities that are
#    new, and only their events; each event's ``raw_event`` is its message as it is, or, when the message had extra
#    fields not on the allow-list (TXMON_EXTRA_FIELDS), the message without them; the verbatim message of such an event
#    is kept apart in ``staging.raw_events`` (an audit copy with its own retention, not an outcome of its offset; none
#    when TXMON_RAW_EVENT_RETENTION_DAYS is 0),
# 3. COPYs the invalid messages verbatim into ``staging.rejected_transactions`` with their reason: the home database
#    those that are no event at all, every database the events of its regions that PostgreSQL itself refuses to store
#    (found by bisecting the batch, with PostgreSQL's message as the reason), so that no message's content can stop the
#    batch,
# 4. advances ``staging.kafka_offsets`` past the batch and records the batch in ``staging.ingest_batches``.
# A crash anywhere before the commit, or a connection lost with the COMMIT's outcome unknown, leaves the stored
# positions to decide: consumption resumes from them, so every offset is accounted for once. The sink's session has lock
# and statement timeouts, so a stuck lock shows up as an error to retry, never as a worker waiting forever.
#
# A deployment may keep regions in different databases (data residency): one sink per database, each landing only its
# regions' events while accounting for every offset of the batch.

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, cast

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.errors import CheckViolation, NotNullViolation, ProgramLimitExceeded, UniqueViolation
from psycopg.pq import Format
from psycopg.types.json import Jsonb

from contracts.transaction import Transaction
from txmon.core.db import connect
from txmon.core.errors import first_line

LANDING_COLUMNS = (
    "transaction_id",
    "status",
    "event_time",
    "account_id",
    "counterparty_id",
    "amount",
    "currency",
    "region",
    "fraud_flag",
    "produced_at",
    "topic",
    "partition",
    "offset",
    "raw_event",
)
# The landing columns as a SQL list (quoted: "partition" and "offset" are keywords).
COLUMN_LIST = ", ".join(f'"{c}"' for c in LANDING_COLUMNS)
# Binary COPY: PostgreSQL receives numbers and timestamps ready-made instead of parsing their text.
LANDING_TYPES = (
    "text",
    "text",
    "timestamptz",
    "text",
    "text",
    "numeric",
    "text",
    "text",
    "bool",
    "timestamptz",
    "text",
    "int4",
    "int8",
    "jsonb",
)
IDENTITY_COLUMNS = '"transaction_id", "status", "event_time", "topic", "partition", "offset"'
IDENTITY_TYPES = ("text", "text", "timestamptz", "text", "int4", "int8")
RAW_EVENT_COLUMNS = '"topic", "partition", "offset", "raw_value"'
RAW_EVENT_TYPES = ("text", "int4", "int8", "bytea")

REJECTED_COLUMNS = ("topic", "partition", "offset", "kafka_key", "raw_value", "raw_text", "reason", "produced_at")
REASON_CHARS = 1000

# The landing session's guards: a lock held elsewhere or a statement that hangs becomes an error
# the worker retries (positions decide what is landed), never a worker stuck for good.
SESSION_TIMEOUTS = {"lock_timeout": "10s", "statement_timeout": "120s", "idle_in_transaction_session_timeout": "300s"}

# What one message's content can make PostgreSQL (or the client encoding it) refuse. Anything else
# (a lost connection, a timeout) is no message's fault: the batch is retried instead.
CONTENT_ERRORS = (
    psycopg.DataError,
    CheckViolation,
    NotNullViolation,
    ProgramLimitExceeded,
    ValueError,
    OverflowError,
    TypeError,
)


class RawJson(bytes):
    """A message's bytes, known to be one JSON object (registered with RawJsonbDumper; never built)."""


class RawJsonbDumper(Dumper):
    """jsonb in binary COPY straight from a message's bytes (validated JSON, UTF-8, no NUL): no re-encoding."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: bytes) -> bytes:
        return b"\x01" + obj  # jsonb's binary format: version 1, then the JSON text


class OffsetConflict(RuntimeError):
    """Another worker advanced a partition this batch covers; the batch was not written."""


@dataclass(slots=True)
class Message:
    """One consumed Kafka message, after validation: ``event`` or ``reason`` is set."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    produced_at: datetime | None
    event: Transaction | None = None
    reason: str | None = None
    region_hint: str | None = None  # the `region` field of an invalid message, when it has one

    @property
    def region(self) -> str | None:
        """The region the message names: its event's, or (invalid) the field it carries."""
        return self.event.region if self.event is not None else self.region_hint

    @property
    def size(self) -> int:
        return len(self.value or b"") + len(self.key or b"")


if TYPE_CHECKING:

    class ValidMessage(Message):
        """For the type checker only: a Message whose event is set, as the sink lands them."""

        event: Transaction


@dataclass
class BatchResult:
    landed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> (first, last)
    slices: Counter = field(default_factory=Counter)  # (event_date, region) -> landed rows
    # (partition, offset) -> reason, for events a database refused to store (quarantined instead).
    refused: dict[tuple[int, int], str] = field(default_factory=dict)

    def add(self, other: BatchResult) -> None:
        self.landed += other.landed
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.slices.update(other.slices)
        self.refused.update(other.refused)
        for p, (first, last) in other.offsets.items():
            old = self.offsets.get(p)
            self.offsets[p] = (min(first, old[0]), max(last, old[1])) if old else (first, last)


def _raw_text(value: bytes | None) -> str | None:
    if value is None or b"\x00" in value:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def storable_reason(reason: str) -> str:
    """A reason PostgreSQL can store: no NUL, no lone surrogate, of bounded length."""
    text = reason.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


class WarehouseSink:
    """Lands the events of ``regions`` in one database, and the quarantined messages that name one of
    them; the home database also keeps those naming no region held elsewhere (``others``)."""

    def __init__(
        self,
        dsn: str,
        topic: str,
        regions: Iterable[str],
        *,
        home: bool,
        worker: str,
        raw_events: bool = True,
        others: Iterable[str] = (),
    ):
        self.dsn = dsn
        self.topic = topic
        self.regions = frozenset(regions)
        self.others = frozenset(others)
        self.home = home
        self.worker = worker
        self.raw_events = raw_events  # keep the verbatim message of events stored without some extra fields
        self.conn = connect(dsn, autocommit=True, purpose=f"ingest:{worker}")
        # Positions are read on a connection of their own: a consumer-group callback may read them while
        # the landing thread has a transaction open on the landing connection.
        self.reader = connect(dsn, autocommit=True, purpose=f"ingest-positions:{worker}")
        for conn in (self.conn, self.reader):
            for name, value in SESSION_TIMEOUTS.items():
                conn.execute(f"SET {name} = '{value}'")
        # COPY with set_types picks dumpers by type oid: jsonb columns of this connection's COPYs take raw bytes.
        self.conn.adapters.register_dumper(RawJson, RawJsonbDumper)
        self.conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS landing AS SELECT {COLUMN_LIST} FROM staging.transactions WITH NO DATA"  # noqa: S608
        )
        self._known_days: set[date] = set()
        # Identities (transaction_id, status) of the events of the last batch this sink committed.
        self._recent: set = set()
        # partition -> next offset this database has accounted for (None: nothing yet).
        self.next_offsets: dict[int, int | None] = {}

    def close(self) -> None:
        for conn in (self.conn, self.reader):
            try:
                conn.close()
            except psycopg.Error:
                pass

    def ping(self) -> None:
        self.conn.execute("SELECT 1")

    def load_positions(self, partitions: Sequence[int]) -> dict[int, int | None]:
        rows = self.reader.execute(
            'SELECT "partition", next_offset FROM staging.kafka_offsets WHERE topic = %s AND "partition" = ANY(%s)',
            (self.topic, list(partitions)),
        ).fetchall()
        stored: dict[int, int] = dict(rows)
        self.next_offsets = {p: stored.get(p) for p in partitions}
        return dict(self.next_offsets)

    def load_sources(self) -> set[tuple[str | None, str | None]]:
        """The (Kafka cluster id, topic id) pairs the stored positions were taken from."""
        return set(
            self.reader.execute(
                "SELECT DISTINCT cluster_id, topic_id FROM staging.kafka_offsets WHERE topic = %s", (self.topic,)
            ).fetchall()
        )

    def ensure_days(self, days: Iterable[date]) -> None:
        """Create the day partitions of staging.transactions that do not exist yet (own transaction)."""
        new = sorted(set(days) - self._known_days)
        if not new:
            return
        with self.conn.transaction():
            for day in new:
                self.conn.execute("SELECT staging.ensure_transactions_partition(%s)", (day,))
        self._known_days.update(new)

    def _fence(self, partitions: Sequence[int]) -> None:
        rows = self.conn.execute(
            'SELECT "partition", next_offset FROM staging.kafka_offsets '
            'WHERE topic = %s AND "partition" = ANY(%s) ORDER BY "partition" FOR UPDATE',
            (self.topic, list(partitions)),
        ).fetchall()
        stored: dict[int, int] = dict(rows)
        moved = [p for p in partitions if stored.get(p) != self.next_offsets.get(p)]
        if moved:
            raise OffsetConflict(f"partitions {moved} of {self.topic} were advanced by another worker")

    def land(self, messages: Sequence[Message], source: tuple[str | None, str | None] = (None, None)) -> BatchResult:
        """Write one batch; returns what this database received. Raises OffsetConflict when fenced.

        ``source`` is the (Kafka cluster id, topic id) the messages came from, kept with the positions.
        An event whose content PostgreSQL refuses is quarantined here with PostgreSQL's reason and
        the batch is written again without it.
        """
        refused: dict[tuple[int, int], str] = {}
        try:
            return self._land(messages, source, refused)
        except CONTENT_ERRORS:
            refused = self._find_refused(messages)
            if not refused:
                raise
            return self._land(messages, source, refused)

    def _mine(
        self, messages: Sequence[Message], refused: dict[tuple[int, int], str], result: BatchResult
    ) -> tuple[list[ValidMessage], list[tuple[Message, str]]]:
        """This database's share of the batch: (events to land, messages to quarantine), offsets noted."""
        mine: list[Message] = []
        rejected: list[tuple[Message, str]] = []
        for m in messages:
            known = self.next_offsets.get(m.partition)
            if known is not None and m.offset < known:
                continue  # accounted for here already (a replay after another database was behind)
            seen = result.offsets.get(m.partition)
            if seen is not None and m.offset <= seen[1]:
                raise OffsetConflict(f"the batch repeats offset {m.offset} of partition {m.partition} (a rebalance)")
            first, last = result.offsets.get(m.partition, (m.offset, m.offset))
            result.offsets[m.partition] = (min(first, m.offset), max(last, m.offset))
            if m.event is not None:
                if m.event.region in self.regions:
                    reason = refused.get((m.partition, m.offset))
                    if reason is None:
                        mine.append(m)
                    else:
                        rejected.append((m, reason))
                        result.refused[(m.partition, m.offset)] = reason
            elif m.region_hint in self.regions or (self.home and m.region_hint not in self.others):
                assert m.reason is not None  # a message without an event has its reason
                rejected.append((m, m.reason))
        return cast("list[ValidMessage]", mine), rejected  # each one with its event

    def _land(self, messages: Sequence[Message], source: tuple, refused: dict) -> BatchResult:
        result = BatchResult()
        mine, rejected = self._mine(messages, refused, result)
        if not result.offsets:
            return result
        self.ensure_days(m.event.event_date for m in mine)

        partitions = sorted(result.offsets)
        identities: set = set()
        with self.conn.transaction():
            self._fence(partitions)
            if mine:
                landed, duplicates, identities = self._land_events(mine)
                result.landed, result.duplicates = len(landed), len(duplicates)
                slices = result.slices
                for m in landed:
                    slices[(m.event.event_date, m.event.region)] += 1
            if rejected:
                self._quarantine(rejected)
                result.quarantined = len(rejected)
            self._advance(result, source)
        self._recent = identities  # only once committed: a remembered event is a stored event
        for p, (_, last) in result.offsets.items():
            self.next_offsets[p] = last + 1
        return result

    def _find_refused(self, messages: Sequence[Message]) -> dict[tuple[int, int], str]:
        """The events of this database PostgreSQL refuses to store, each with PostgreSQL's reason.

        Bisects the batch over COPYs into the session's scratch table (same column types as
        staging.transactions), each in a savepoint; nothing is kept.
        """
        candidates = cast(  # each one with its event
            "list[ValidMessage]", [m for m in messages if m.event is not None and m.event.region in self.regions]
        )
        refused: dict[tuple[int, int], str] = {}

        def probe(part: list[ValidMessage]) -> None:
            try:
                with self.conn.transaction():
                    self._copy_events(f"COPY landing ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)", part)
                    raise _Probed
            except _Probed:
                return
            except CONTENT_ERRORS as exc:
                if len(part) == 1:
                    m = part[0]
                    refused[(m.partition, m.offset)] = f"PostgreSQL cannot store it: {first_line(exc)}"
                    return
            half = len(part) // 2
            probe(part[:half])
            probe(part[half:])

        if candidates:
            probe(candidates)
        return refused

    def _land_events(self, mine: Sequence[ValidMessage]) -> tuple[list[ValidMessage], list[ValidMessage], set]:
        """Store the events once each: (landed, duplicates (recorded as such), the batch's identities)."""
        fresh: list[ValidMessage] = []
        duplicates: list[ValidMessage] = []
        recent = self._recent
        seen: set = set()
        for m in mine:
            e = m.event
            key = (e.transaction_id, e.status)
            if key in seen or key in recent:
                duplicates.append(m)
            else:
                seen.add(key)
                fresh.append(m)
        try:
            with self.conn.transaction():  # a savepoint: a known identity aborts only this attempt
                self._copy_identities(fresh)
                self._copy_events(f"COPY staging.transactions ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)", fresh)
            landed = fresh
        except UniqueViolation:
            landed, stored = self._land_via_scratch(fresh)
            duplicates.extend(stored)
        if self.raw_events:
            self._copy_raw_events([m for m in landed if m.event.raw_event is not None])
        if duplicates:
            with (
                self.conn.cursor() as cur,
                cur.copy(
                    'COPY staging.duplicate_transactions (topic, "partition", "offset", transaction_id, status, '
                    "event_time) FROM STDIN"
                ) as copy,
            ):
                for m in duplicates:
                    copy.write_row(
                        (self.topic, m.partition, m.offset, m.event.transaction_id, m.event.status, m.event.event_time)
                    )
        return landed, duplicates, seen

    def _copy_identities(self, messages: Sequence[ValidMessage]) -> None:
        topic = self.topic
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY staging.event_identities ({IDENTITY_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(IDENTITY_TYPES)
            write_row = copy.write_row
            for m in messages:
                e = m.event
                write_row((e.transaction_id, e.status, e.event_time, topic, m.partition, m.offset))

    def _copy_raw_events(self, messages: Sequence[Message]) -> None:
        """The verbatim messages of events whose raw_event left extra fields out (an audit copy)."""
        if not messages:
            return
        topic = self.topic
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY staging.raw_events ({RAW_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(RAW_EVENT_TYPES)
            for m in messages:
                copy.write_row((topic, m.partition, m.offset, m.value))

    def _copy_events(self, statement: str, messages: Sequence[ValidMessage]) -> None:
        """Binary COPY of the events: raw_event takes the message bytes as they are (see RawJsonbDumper),
        or the event without its extra fields not on the allow-list."""
        topic = self.topic
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(LANDING_TYPES)
            write_row = copy.write_row
            for m in messages:
                e = m.event
                write_row(
                    (
                        e.transaction_id,
                        e.status,
                        e.event_time,
                        e.account_id,
                        e.counterparty_id,
                        e.amount,
                        e.currency,
                        e.region,
                        e.fraud_flag,
                        m.produced_at,
                        topic,
                        m.partition,
                        m.offset,
                        e.raw_event or m.value,
                    )
                )

    def _land_via_scratch(self, messages: Sequence[ValidMessage]) -> tuple[list[ValidMessage], list[ValidMessage]]:
        """The careful way: scratch table, new identities only, then their events; (landed, already stored)."""
        with self.conn.cursor() as cur:
            cur.execute("TRUNCATE landing")
            self._copy_events(f"COPY landing ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)", messages)
            cur.execute(
                f"""
                WITH new AS (
                    INSERT INTO staging.event_identities ({IDENTITY_COLUMNS})
                    SELECT {IDENTITY_COLUMNS} FROM landing
                    ON CONFLICT DO NOTHING RETURNING "partition", "offset"
                )
                INSERT INTO staging.transactions ({COLUMN_LIST})
                SELECT {COLUMN_LIST} FROM landing JOIN new USING ("partition", "offset")
                RETURNING "partition", "offset"
                """  # noqa: S608 (the only interpolations are the constant column lists)
            )
            inserted = set(cur.fetchall())
        landed = [m for m in messages if (m.partition, m.offset) in inserted]
        stored = [m for m in messages if (m.partition, m.offset) not in inserted]
        return landed, stored

    def _quarantine(self, rejected: Sequence[tuple[Message, str]]) -> None:
        cols = ", ".join(f'"{c}"' for c in REJECTED_COLUMNS)
        with self.conn.cursor() as cur, cur.copy(f"COPY staging.rejected_transactions ({cols}) FROM STDIN") as copy:
            for m, reason in rejected:
                copy.write_row(
                    (
                        self.topic,
                        m.partition,
                        m.offset,
                        m.key,
                        m.value,
                        _raw_text(m.value),
                        storable_reason(reason),
                        m.produced_at,
                    )
                )

    def _advance(self, result: BatchResult, source: tuple[str | None, str | None]) -> None:
        cluster_id, topic_id = source
        with self.conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO staging.kafka_offsets (topic, "partition", next_offset, cluster_id, topic_id)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (topic, "partition")
                DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = statement_timestamp(),
                              cluster_id = EXCLUDED.cluster_id, topic_id = EXCLUDED.topic_id
                """,
                [(self.topic, p, last + 1, cluster_id, topic_id) for p, (_, last) in sorted(result.offsets.items())],
            )
            cur.execute(
                """
                INSERT INTO staging.ingest_batches (worker, landed, duplicates, quarantined, offsets, slices)
                VALUES (%s, %s, %s, %s, %s, %s)
                """,
                (
                    self.worker,
                    result.landed,
                    result.duplicates,
                    result.quarantined,
                    Jsonb({str(p): list(v) for p, v in sorted(result.offsets.items())}),
                    Jsonb({f"{d.isoformat()}|{r}": n for (d, r), n in sorted(result.slices.items())}),
                ),
            )


class _Probed(Exception):
    """Ends a probe's savepoint (rolls it back) once its COPY went through."""
