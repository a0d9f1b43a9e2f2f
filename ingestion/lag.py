"""How far the landed data is behind the topic: per partition, end offset minus stored position."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from confluent_kafka import TopicPartition

from txmon.core import kafka as kafka_clients
from txmon.core.db import connect
from txmon.core.settings import KafkaUser, Role, Settings

POSITIONS = 'SELECT "partition", next_offset FROM staging.kafka_offsets WHERE topic = %s'


def end_offsets(settings: Settings, user: KafkaUser, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """Each partition of the topic: its (low, high) watermarks, asked of the brokers as ``user`` (a metadata and a
    list-offsets request: Describe on the topic, no group)."""
    consumer = kafka_clients.consumer(settings, user=user)
    try:
        meta = consumer.list_topics(settings.topic, timeout=timeout).topics[settings.topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(settings.topic, p), timeout=timeout, cached=False)
            for p in sorted(meta.partitions)
        }
    finally:
        consumer.close()


def positions(conn: psycopg.Connection, topic: str) -> dict[int, int]:
    """The next offset to land of each partition, as one database stores it."""
    return dict(conn.execute(POSITIONS, (topic,)).fetchall())


def lag(ends: dict[int, tuple[int, int]], stored: Iterable[dict[int, int]]) -> dict[int, int]:
    """Per partition, the messages not yet accounted for in every database (the largest gap of any)."""
    out: dict[int, int] = {p: 0 for p in ends}
    for by_partition in stored:
        for p, (low, high) in ends.items():
            out[p] = max(out[p], high - max(by_partition.get(p, low), low))
    return out


def consumer_lag(settings: Settings) -> dict[int, int]:
    """Messages on the topic not yet accounted for in every database, per partition."""
    ends = end_offsets(settings, KafkaUser.INGEST)
    stored = []
    for dsn in settings.databases():
        with connect(settings.as_role(dsn, Role.INGEST), autocommit=True, purpose="lag") as conn:
            stored.append(positions(conn, settings.topic))
    return lag(ends, stored)
