"""`txmon prune`: delete what is past its retention, as the daily prune_dagster_history job does."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from orchestration.defs.maintenance.prune import prune_all
from orchestration.instance import open_instance
from txmon.cli.common import pass_settings
from txmon.core.settings import Settings


@click.command("prune")
@pass_settings
def prune(settings: Settings) -> int:
    with open_instance(settings) as instance:  # the instance the UI shows
        deleted = prune_all(settings, instance, datetime.now(UTC))
    for table, rows in deleted.items():
        click.echo(f"{table:<36} {rows:>10,} deleted")
    return 0
