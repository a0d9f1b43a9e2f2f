"""How far the landed data is behind the topic: per partition, end offset minus stored position."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from txmon.core import kafka as kafka_clients
from txmon.core.db import connect
from txmon.core.settings import Role, Settings


def consumer_lag(settings: Settings) -> dict[int, int]:
    """Messages on the topic not yet accounted for in every database, per partition."""
    consumer = kafka_clients.consumer(settings)
    try:
        meta = consumer.list_topics(settings.topic, timeout=10).topics[settings.topic]
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(settings.topic, p), timeout=10, cached=False)
            for p in sorted(meta.partitions)
        }
    finally:
        consumer.close()
    lag: dict[int, int] = {}
    for dsn in settings.databases():
        with connect(settings.as_role(dsn, Role.INGEST), autocommit=True, purpose="lag") as conn:
            stored: dict[int, int] = dict(
                conn.execute(
                    'SELECT "partition", next_offset FROM staging.kafka_offsets WHERE topic = %s', (settings.topic,)
                ).fetchall()
            )
        for p, (low, high) in ends.items():
            lag[p] = max(lag.get(p, 0), high - max(stored.get(p, low), low))
    return lag
