"""`txmon prune`: delete what is past its retention, as the daily prune_dagster_history job does."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from dagster import DagsterInstance

from orchestration.defs.maintenance.prune import prune_all
from orchestration.instance import dagster_home
from txmon.cli.common import pass_settings
from txmon.core.settings import Settings


@click.command("prune")
@pass_settings
def prune(settings: Settings) -> int:
    dagster_home(settings)  # the instance the UI shows (its storage from the settings)
    with DagsterInstance.get() as instance:
        deleted = prune_all(settings, instance, datetime.now(UTC))
    for table, rows in deleted.items():
        click.echo(f"{table:<36} {rows:>10,} deleted")
    return 0
