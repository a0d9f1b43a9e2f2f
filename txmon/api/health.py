"""`/health`: which of the API's sources answer (each database, by the regions it holds, and Kafka), never
why one does not: its error is logged on the server."""

from __future__ import annotations

import logging

from txmon.api.store import HEALTH_TIMEOUT, Store, first_line
from txmon.core import kafka as kafka_clients
from txmon.core.settings import KafkaUser

log = logging.getLogger("txmon.api")
OK, DOWN = "ok", "unavailable"


def kafka_answers(store: Store) -> bool:
    """Whether a broker answers a metadata request for the topic within HEALTH_TIMEOUT."""
    try:
        admin = kafka_clients.admin(store.settings, user=KafkaUser.API)
        admin.list_topics(store.settings.topic, timeout=HEALTH_TIMEOUT)
    except Exception as exc:
        log.warning("health: kafka did not answer: %s", first_line(exc))
        return False
    return True


def read(store: Store) -> tuple[int, dict]:
    """The answer of /health: 200 when every database answers (what the API reads), else 503; Kafka's state
    is reported beside them (the metrics' consumer lag needs it, no answer of the API does)."""
    databases = {name: OK if up else DOWN for name, up in store.ping().items()}
    ok = all(state == OK for state in databases.values())
    body = {"status": OK if ok else DOWN, "databases": databases, "kafka": OK if kafka_answers(store) else DOWN}
    return (200 if ok else 503), body
