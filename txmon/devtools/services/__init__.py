"""Local PostgreSQL and Kafka (and Prometheus), started and stopped the same way for the README, tests and CI."""

from __future__ import annotations

from txmon.core import credentials
from txmon.core.paths import tighten
from txmon.core.settings import Settings
from txmon.core.warehouse import migrate
from txmon.devtools.services.common import ServiceError, ServiceStatus
from txmon.devtools.services.kafka import Kafka
from txmon.devtools.services.monitoring import Monitoring
from txmon.devtools.services.postgres import Postgres

__all__ = ["ServiceError", "ServiceStatus", "down", "status", "up"]


def up(settings: Settings, *, monitoring: bool = False) -> list[ServiceStatus]:
    """Start both services (a no-op for one already up), create topics and apply migrations; with
    ``monitoring``, Prometheus and the PostgreSQL exporter too."""
    credentials.ensure(settings)
    tighten(settings.state_dir)  # what an earlier txmon made readable to others (before umask 077) is made private
    Postgres(settings).start()
    migrate(settings)
    Kafka(settings).start()
    if monitoring:
        Monitoring(settings).start()
    return status(settings)


def down(settings: Settings) -> None:
    Monitoring(settings).stop()
    Kafka(settings).stop()
    Postgres(settings).stop()


def status(settings: Settings) -> list[ServiceStatus]:
    """PostgreSQL and Kafka; Prometheus and the exporter when they were started."""
    found = [Postgres(settings).status(), Kafka(settings).status()]
    monitoring = Monitoring(settings)
    return [*found, *monitoring.status()] if monitoring.running() else found
