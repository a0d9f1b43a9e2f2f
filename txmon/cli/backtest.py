"""`txmon backtest`: what the suspicious-activity rules would flag in landed history with other parameters."""

from __future__ import annotations

import json
from datetime import date

import click

from txmon.cli.common import BadArgument, pass_settings
from txmon.cli.params import DAY, days
from txmon.core.settings import ConfigError, Settings
from txmon.quality.backtest import backtest as replay
from txmon.quality.backtest import parameters


@click.command("backtest")
@click.option("--from", "first", type=DAY, required=True, help="the first day")
@click.option("--to", "last", type=DAY, required=True, help="the last day (inclusive)")
@click.option("--region", help="one region (default: all)")
@click.option(
    "--rules",
    help='parameters over the configured ones, as TXMON_RULES: {"*": {"velocity_max_transactions": 30}, "EU": {...}} '
    "(default: the parameters the marts used)",
)
@pass_settings
def backtest(settings: Settings, first: date, last: date, region: str | None, rules: str | None) -> int:
    """Replay the rules over landed history; publishes nothing. Prints per day, region and reason how many
    transactions and accounts they flag."""
    try:
        days(first, last)
    except ValueError as exc:
        raise BadArgument(f"txmon backtest: {exc}") from None
    if region is not None and region not in settings.regions:
        raise BadArgument(f"txmon backtest: region {region!r} is not one of {', '.join(settings.regions)}")
    try:
        given = json.loads(rules) if rules is not None else None
        regions = (region,) if region else settings.regions
        judged_by = parameters(settings, given, regions)
    except ValueError as exc:  # JSON, or the parameters (ConfigError)
        what = str(exc) if isinstance(exc, ConfigError) else f"--rules is not JSON ({exc})"
        raise BadArgument(f"txmon backtest: {what}") from None
    if judged_by is None:
        click.echo("parameters: the versions in force at each transaction (as the marts)")
    else:
        for name, values in judged_by.items():
            click.echo(f"parameters {name}: {json.dumps(values, sort_keys=True)}")
    found = replay(settings, first, last, region, judged_by)
    click.echo(f"{'day':<10}  {'region':<6}  {'reason':<22}  {'transactions':>12}  {'accounts':>8}")
    for row in found:
        click.echo(f"{row.day}  {row.region:<6}  {row.reason:<22}  {row.transactions:>12}  {row.accounts:>8}")
    if not found:
        click.echo(f"nothing flagged from {first} to {last}")
    return 0
