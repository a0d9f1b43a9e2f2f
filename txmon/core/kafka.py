"""The one place that builds Kafka clients' configuration."""
# Every client connects as the Kafka user of its caller's duty (KafkaUser): the broker's ACLs let each do its duty
# only (txmon/devtools/services/kafka.py). The caller names the duty; nothing defaults to a user that may do more.

from __future__ import annotations

import logging

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from txmon.core import credentials
from txmon.core.settings import KafkaUser, Settings

_quiet = logging.getLogger("txmon.core.kafka.client")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def config(settings: Settings, user: KafkaUser, **extra: object) -> dict[str, object]:
    """A client's configuration as ``user``: the broker, and the user's name and password when SASL is on."""
    # librdkafka's own logging goes to a silent logger; errors surface through the API instead.
    out = {"bootstrap.servers": settings.kafka_bootstrap, "logger": _quiet}
    out["security.protocol"] = settings.kafka_security_protocol
    if settings.kafka_security_protocol.startswith("SASL_"):
        mechanism = settings.kafka_admin_sasl_mechanism if user is KafkaUser.ADMIN else settings.kafka_sasl_mechanism
        out.update(
            {
                "sasl.mechanisms": mechanism,
                "sasl.username": settings.kafka_user(user),
                "sasl.password": credentials.kafka_password(settings, user),
            }
        )
    return {**out, **extra}


def admin(settings: Settings, *, user: KafkaUser) -> AdminClient:
    """An admin client as ``user``: what it may do (create topics, describe them) is what the user's ACLs allow."""
    # confluent-kafka types AdminClient's configuration as scalars only, yet documents and accepts a "logger".
    return AdminClient(config(settings, user))  # type: ignore[arg-type]


def producer(settings: Settings, *, user: KafkaUser, **extra: object) -> Producer:
    """An idempotent producer: a retried send is written once, in order, per partition."""
    return Producer(
        config(
            settings,
            user,
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


def consumer(settings: Settings, *, user: KafkaUser, **extra: object) -> Consumer:
    """A consumer whose position is driven by the offsets stored in PostgreSQL, not by Kafka."""
    return Consumer(
        config(
            settings,
            user,
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
