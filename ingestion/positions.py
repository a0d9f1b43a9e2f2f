"""Stored positions against the topic they were read from: no silent skip, no silent re-read."""
# A position (``staging.kafka_offsets``) is only meaningful on the topic it was taken from. When the topic was recreated
# (new topic id, or its end now lies before the position), another cluster answers (new cluster id), or retention
# removed messages before they were consumed (the position lies before the topic's first offset), resuming would skip or
# re-read messages while the lag reads 0. The worker stops instead, with the reason, and the offset audit reports the
# same problems; an operator decides what to do (docs/operations.md, "When positions do not match the topic").

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient


class PositionError(RuntimeError):
    """The stored positions do not belong to the topic as it is now. Never retried."""


@dataclass(frozen=True)
class Source:
    """Which topic the messages come from: the Kafka cluster's id and the topic's id."""

    cluster_id: str | None
    topic_id: str | None

    def as_tuple(self) -> tuple[str | None, str | None]:
        return self.cluster_id, self.topic_id


def current_source(consumer: Consumer, admin: AdminClient, topic: str, timeout: float = 10) -> Source:
    cluster_id = consumer.list_topics(topic, timeout=timeout).cluster_id
    description = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic].result(timeout)
    return Source(cluster_id, str(description.topic_id) if description.topic_id is not None else None)


def watermarks(consumer: Consumer, topic: str, partitions: Iterable[int], timeout: float = 10) -> dict[int, tuple]:
    """partition -> (first offset still on the topic, end offset)."""
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False) for p in partitions
    }


def inspect(
    consumer: Consumer,
    admin: AdminClient,
    topic: str,
    stored: Mapping[int, int | None],
    stored_sources: Iterable[tuple[str | None, str | None]],
) -> tuple[Source, list[str]]:
    """The topic's identity now, and what is wrong with resuming from ``stored`` on it."""
    source = current_source(consumer, admin, topic)
    return source, problems(topic, stored, stored_sources, source, watermarks(consumer, topic, stored))


def problems(
    topic: str,
    stored: Mapping[int, int | None],
    stored_sources: Iterable[tuple[str | None, str | None]],
    source: Source,
    marks: Mapping[int, tuple[int, int]],
) -> list[str]:
    """What is wrong with resuming from ``stored`` on the topic as it is now (empty: nothing)."""
    found: list[str] = []
    for cluster_id, topic_id in sorted(set(stored_sources), key=str):
        if cluster_id is not None and source.cluster_id is not None and cluster_id != source.cluster_id:
            found.append(
                f"the positions of {topic} were taken on Kafka cluster {cluster_id}, "
                f"but the broker is cluster {source.cluster_id}"
            )
        if topic_id is not None and source.topic_id is not None and topic_id != source.topic_id:
            found.append(
                f"the positions of {topic} were taken on topic id {topic_id}, but the topic now has id "
                f"{source.topic_id} (it was deleted and created again)"
            )
    for p, position in sorted(stored.items()):
        if position is None or p not in marks:
            continue
        low, high = marks[p]
        if position > high:
            found.append(
                f"partition {p}: the stored position {position} lies past the topic's end {high} "
                "(the topic was recreated or truncated, or this is another cluster)"
            )
        elif position < low:
            found.append(
                f"partition {p}: offsets {position}..{low - 1} were removed from the topic (retention) "
                "before they were consumed"
            )
    return found
