"""`txmon services`, `txmon migrate`, `txmon info`: the local PostgreSQL and Kafka, the warehouse schema
and the effective settings."""

from __future__ import annotations

import json
from collections.abc import Iterable

import click

from txmon.cli import EXIT_FAILURE
from txmon.cli.common import pass_settings
from txmon.core.settings import Settings
from txmon.core.urls import where
from txmon.core.warehouse import migrate as migrate_warehouse
from txmon.devtools import services as local_services
from txmon.devtools.services.common import ServiceStatus

EXIT_NOT_UP = 3  # `txmon services status` when a service is down


def show(statuses: Iterable[ServiceStatus]) -> None:
    for s in statuses:
        click.echo(f"{s.name:<10} {'up' if s.up else 'down':<5} {s.detail}")


@click.command("services")
@click.argument("action", type=click.Choice(["up", "down", "status"]))
@click.option("--monitoring", is_flag=True, help="up: also Prometheus and the PostgreSQL exporter")
@pass_settings
def services(settings: Settings, action: str, monitoring: bool) -> int:
    if action == "up":
        statuses = local_services.up(settings, monitoring=monitoring)
    elif action == "down":
        local_services.down(settings)
        statuses = local_services.status(settings)
    else:
        statuses = local_services.status(settings)
    show(statuses)
    if action == "up" and not all(s.up for s in statuses):
        return EXIT_FAILURE
    if action == "status" and not all(s.up for s in statuses):
        return EXIT_NOT_UP
    return 0


@click.command("migrate")
@pass_settings
def migrate(settings: Settings) -> int:
    for dsn, applied in migrate_warehouse(settings).items():
        click.echo(f"{where(dsn)}: {', '.join(applied) if applied else 'up to date'}")
    return 0


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="as one JSON object")
@pass_settings
def info(settings: Settings, as_json: bool) -> int:
    effective = settings.info()
    if as_json:
        click.echo(json.dumps(effective, sort_keys=True))
    else:
        for key, value in sorted(effective.items()):
            click.echo(f"{key:<26} {value}")
    return 0
