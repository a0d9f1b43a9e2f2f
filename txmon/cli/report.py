"""`txmon report`: a region-day's report package built by hand, and `txmon report verify PATH`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from txmon.cli import EXIT_FAILURE
from txmon.cli.common import BadArgument, Failure, pass_settings
from txmon.cli.params import DAY, check_partition
from txmon.core.settings import Settings, replace
from txmon.reports.package import GLOBAL, PackageError, build, build_global, verify


@click.group("report", invoke_without_command=True)
@click.option("--date", "day", type=DAY, help="the UTC day (with --region: build its package)")
@click.option("--region", help=f"a region, or {GLOBAL!r}: the home database's roll-up of every region")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="the folder to keep the region's packages in (default: the region's report directory)",
)
@click.pass_context
def report(ctx: click.Context, day: date | None, region: str | None, out: Path | None) -> int | None:
    """Build the package of a published region-day (a new version only when it was republished since)."""
    if ctx.invoked_subcommand is not None:
        return None
    if day is None or region is None:
        raise BadArgument("txmon report: --date and --region are required (or `txmon report verify PATH`)")
    return ctx.invoke(_build, day=day, region=region, out=out)


@pass_settings
def _build(settings: Settings, day: date, region: str, out: Path | None) -> int:
    try:
        check_partition(settings, day, settings.regions[0] if region == GLOBAL else region)
    except ValueError as exc:
        raise BadArgument(f"txmon: {exc}") from None
    if out is not None:
        settings = replace(settings, report_dirs={**settings.report_dirs, region: out.resolve()})
    try:
        built = build_global(settings, day) if region == GLOBAL else build(settings, day, region)
    except PackageError as exc:
        raise Failure(f"txmon: {exc}") from None
    what = "built" if built.created else "unchanged, already"
    click.echo(f"{day}|{region}: {what} version {built.version} at {built.path}")
    return 0


@report.command("verify")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the PEM public key to check the signature with (default: the configured signing key's)",
)
@click.option(
    "--offline",
    is_flag=True,
    help="check the signature and the files only (no database: a package downloaded elsewhere, with --public-key)",
)
@pass_settings
def verify_command(settings: Settings, path: Path, public_key: Path | None, offline: bool) -> int:
    """Check a package: its signature, every file's hash, and its control totals against `reporting` now."""
    try:
        problems = verify(settings, path, public_key, drift=not offline)
    except PackageError as exc:
        raise Failure(f"txmon: {exc}") from None
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        return EXIT_FAILURE
    click.echo(f"{path}: signature and files{'' if offline else ' and control totals'} verified")
    return 0
