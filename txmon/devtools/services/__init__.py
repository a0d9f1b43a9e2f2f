"""Local PostgreSQL and Kafka, started and stopped the same way for the README, tests and CI."""

from __future__ import annotations

from txmon.core import credentials
from txmon.core.settings import Settings
from txmon.core.warehouse import migrate
from txmon.devtools.services.common import ServiceError, ServiceStatus
from txmon.devtools.services.kafka import Kafka
from txmon.devtools.services.postgres import Postgres

__all__ = ["ServiceError", "ServiceStatus", "down", "status", "up"]


def up(settings: Settings) -> list[ServiceStatus]:
    """Start both services (a no-op for one already up), create topics and apply migrations."""
    credentials.ensure(settings)
    Postgres(settings).start()
    migrate(settings)
    Kafka(settings).start()
    return status(settings)


def down(settings: Settings) -> None:
    Kafka(settings).stop()
    Postgres(settings).stop()


def status(settings: Settings) -> list[ServiceStatus]:
    return [Postgres(settings).status(), Kafka(settings).status()]
