"""Kafka lets each user do its duty and nothing else, on the real local broker: no client gets in without a password,
the producer writes the topic but cannot read it, the API only describes it, ingest reads it and writes the quarantine
topic; no Kafka password is ever on a process's command line, also while the broker starts."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.integration.test_live import free_port
from tests.integration.test_private_state import cmdline
from txmon.core import credentials
from txmon.core import kafka as kafka_clients
from txmon.core.settings import KafkaUser, Settings, replace

QUIET = logging.getLogger("tests.kafka_access.client")  # librdkafka's reconnect logs, not the test's output
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}


def produce_one(config: dict, topic: str, timeout: float = 15) -> KafkaError | None:
    """Send one message with ``config`` (not idempotent: the first error is the topic's); its delivery error."""
    errors: list[KafkaError] = []
    producer = Producer({**config, "enable.idempotence": False, "message.timeout.ms": int(timeout * 1000)})
    producer.produce(topic, key=b"k", value=b'{"forged": true}', on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(timeout + 5)
    assert errors, "the delivery report came"
    return errors[0]


def sent(producer: Producer, topic: str) -> KafkaError | None:
    """One message sent with a txmon producer (idempotent): its delivery error, None when acknowledged."""
    errors: list[KafkaError | None] = []
    producer.produce(topic, key=b"k", value=b"{}", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(30)
    assert errors, "the delivery report came"
    return errors[0]


def read_first(config: dict, topic: str, timeout: float = 20) -> KafkaError | bytes | None:
    """The first message of partition 0 of ``topic`` read with ``config``, or the error reading it, or None."""
    consumer = Consumer({**config, "group.id": f"test-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() in (KafkaError._PARTITION_EOF, KafkaError.GROUP_AUTHORIZATION_FAILED):
                    continue  # a client with a group.id looks its coordinator up even to read assigned partitions
                return msg.error()
            return msg.value()
        return None
    finally:
        consumer.close()


def refused(config: dict) -> set[int]:
    """The errors a client with ``config`` met asking for metadata, which it must not get."""
    codes: set[int] = set()
    client = AdminClient({**config, "error_cb": lambda err: codes.add(err.code())})
    with pytest.raises(KafkaException):
        client.list_topics(timeout=3)
    client.poll(1)  # serves the error callback
    return codes


def as_user(settings: Settings, user: KafkaUser) -> dict:
    return kafka_clients.config(settings, user)


def test_a_client_without_a_password_gets_nothing(platform):
    settings = platform.settings
    unauthenticated = {"bootstrap.servers": settings.kafka_bootstrap, "security.protocol": "PLAINTEXT", "logger": QUIET}
    refused(unauthenticated)
    error = produce_one(unauthenticated, settings.topic, timeout=2)
    assert error is not None and error.code() == KafkaError._MSG_TIMED_OUT
    wrong = {**as_user(settings, KafkaUser.PRODUCER), "sasl.password": "not-the-password"}
    assert KafkaError._AUTHENTICATION in refused(wrong)
    # The admin has no SCRAM credential: its password works with PLAIN only.
    scram_admin = {**as_user(settings, KafkaUser.ADMIN), "sasl.mechanisms": settings.kafka_sasl_mechanism}
    assert KafkaError._AUTHENTICATION in refused(scram_admin)
    assert read_first(as_user(settings, KafkaUser.INGEST), settings.topic, timeout=3) is None, "nothing was written"


def test_the_producer_writes_the_topic_and_reads_nothing(platform):
    settings = platform.settings
    producer = as_user(settings, KafkaUser.PRODUCER)
    assert produce_one(producer, settings.topic) is None
    # The txmon producer (idempotent) as well: Write on the topic is all an idempotent producer needs.
    assert sent(kafka_clients.producer(settings, user=KafkaUser.PRODUCER), settings.topic) is None
    denied = read_first(producer, settings.topic)
    assert isinstance(denied, KafkaError) and denied.code() in DENIED, denied
    error = produce_one(producer, settings.quarantine_topic)
    assert error is not None and error.code() in DENIED, error


def test_the_api_describes_the_topic_and_writes_nothing(platform):
    from ingestion.lag import end_offsets

    settings = platform.settings
    assert produce_one(as_user(settings, KafkaUser.PRODUCER), settings.topic) is None
    ends = end_offsets(settings, KafkaUser.API)
    assert sorted(ends) == list(range(settings.topic_partitions)) and sum(high for _, high in ends.values()) == 1
    api = as_user(settings, KafkaUser.API)
    error = produce_one(api, settings.topic)
    assert error is not None and error.code() in DENIED, error
    denied = read_first(api, settings.topic)
    assert isinstance(denied, KafkaError) and denied.code() in DENIED, denied
    # Another topic is not even described.
    topics = AdminClient(api).list_topics(timeout=10).topics
    assert settings.topic in topics and settings.quarantine_topic not in topics


def test_ingest_reads_the_topic_and_writes_the_quarantine_topic_only(platform):
    settings = platform.settings
    assert produce_one(as_user(settings, KafkaUser.PRODUCER), settings.topic) is None
    ingest = as_user(settings, KafkaUser.INGEST)
    consumer = kafka_clients.consumer(settings, user=KafkaUser.INGEST)
    try:  # in its consumer group, as the workers read: every partition from the start
        consumer.assign([TopicPartition(settings.topic, p, OFFSET_BEGINNING) for p in range(settings.topic_partitions)])
        msg, deadline = None, time.monotonic() + 20
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
        assert msg is not None and msg.error() is None and msg.value() == b'{"forged": true}'
        consumer.commit(message=msg, asynchronous=False)  # offsets committed for Kafka's lag tools
    finally:
        consumer.close()
    # The quarantine copy, with the producer the workers use (idempotent).
    assert sent(kafka_clients.producer(settings, user=KafkaUser.INGEST), settings.quarantine_topic) is None
    error = produce_one(ingest, settings.topic)
    assert error is not None and error.code() in DENIED, error
    denied = read_first(ingest, settings.quarantine_topic)
    assert isinstance(denied, KafkaError) and denied.code() in DENIED, denied


def test_no_kafka_password_is_on_a_command_line_while_the_broker_starts(base_settings, tmp_path):
    """A broker of its own (fresh state directory and ports) formatted and started, users and ACLs set, while every
    process's arguments are read; the admin's password is in its server.properties (0600) alone."""
    from txmon.devtools.services.kafka import Kafka

    settings = replace(
        base_settings,
        state_dir=tmp_path / "state",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        kafka_heap="256m",
    )
    credentials.ensure(settings)
    passwords = {user: credentials.kafka_password(settings, user) for user in KafkaUser}
    broker = Kafka(settings)
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        # Every process's whole command line, read from /proc every 20 ms (what `ps -ww` shows, without a process each).
        while not done.is_set():
            for pid in Path("/proc").iterdir():
                if pid.name.isdigit():
                    args = cmdline(int(pid.name))
                    if args:
                        seen.append(args)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        broker.start()
    finally:
        done.set()
        watcher.join()
    try:
        assert any("kafka.tools.StorageTool" in args for args in seen), "the format was seen"
        assert any(str(broker.properties) in args and "kafka.Kafka" in args for args in seen), "the broker was seen"
        for user, password in passwords.items():
            assert not [args for args in seen if password in args], f"{user}'s password on a command line"
        assert (broker.properties.stat().st_mode & 0o077) == 0
        assert passwords[KafkaUser.ADMIN] in broker.properties.read_text()
        assert not any(p in broker.properties.read_text() for u, p in passwords.items() if u is not KafkaUser.ADMIN)
        # The users it made work: the producer writes its topic on this broker.
        assert produce_one(kafka_clients.config(settings, KafkaUser.PRODUCER), settings.topic) is None
    finally:
        broker.stop()
