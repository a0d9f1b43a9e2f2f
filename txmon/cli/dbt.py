"""`txmon dbt ...`: dbt on the project with txmon's connection and variables."""

from __future__ import annotations

import click

from txmon.cli.common import BadArgument, pass_settings
from txmon.core.dbt import dbt_vars, run_dbt, vars_arg
from txmon.core.settings import Settings

# dbt commands that take no --vars
WITHOUT_VARS = ("debug", "deps", "clean")


@click.command(
    "dbt",
    # Everything after `txmon dbt` is dbt's, options included (`txmon dbt build --select x`).
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@pass_settings
def dbt(settings: Settings, dbt_args: tuple[str, ...]) -> int:
    if not dbt_args:
        raise BadArgument("txmon dbt: name a dbt command, e.g. `txmon dbt build`")
    extra = [] if "--vars" in dbt_args or dbt_args[0] in WITHOUT_VARS else vars_arg(dbt_vars(settings))
    return run_dbt(settings, [*dbt_args, *extra]).returncode
