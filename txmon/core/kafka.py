"""The one place that builds Kafka clients' configuration."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from txmon.core import credentials
from txmon.core.settings import Settings

_quiet = logging.getLogger("txmon.core.kafka.client")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def _base(settings: Settings, **extra: object) -> dict[str, object]:
    # librdkafka's own logging goes to a silent logger; errors surface through the API instead.
    config = {"bootstrap.servers": settings.kafka_bootstrap, "logger": _quiet}
    config["security.protocol"] = settings.kafka_security_protocol
    if settings.kafka_security_protocol.startswith("SASL_"):
        config.update(
            {
                "sasl.mechanisms": settings.kafka_sasl_mechanism,
                "sasl.username": settings.kafka_username,
                "sasl.password": credentials.kafka_password(settings),
            }
        )
    return {**config, **extra}


def admin(settings: Settings) -> AdminClient:
    # confluent-kafka types AdminClient's configuration as scalars only, yet documents and accepts a "logger".
    return AdminClient(_base(settings))  # type: ignore[arg-type]


def producer(settings: Settings, **extra: object) -> Producer:
    """An idempotent producer: a retried send is written once, in order, per partition."""
    return Producer(
        _base(
            settings,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                **extra,
            },
        )
    )


def consumer(settings: Settings, **extra: object) -> Consumer:
    """A consumer whose position is driven by the offsets stored in PostgreSQL, not by Kafka."""
    return Consumer(
        _base(
            settings,
            **{
                "group.id": settings.consumer_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 52_428_800,
                "max.partition.fetch.bytes": 10_485_760,
                "queued.min.messages": 200_000,
                **extra,
            },
        )
    )
