"""`txmon materialize`, `publish`, `backfill`, `dagster-setup` and `dagster`: region-day partitions run
through Dagster from the command line, and Dagster's webserver and daemon started and watched."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestration.instance import dagster_env, flag_env, region_env
from txmon.cli import EXIT_FAILURE
from txmon.cli.common import BadArgument, pass_settings, stop_on_signals, supervise
from txmon.cli.params import DAY, check_partition, days
from txmon.core.confine import ruleset
from txmon.core.credentials import Duty
from txmon.core.db import connect
from txmon.core.errors import first_line
from txmon.core.leases import end_leases
from txmon.core.processes import child_env, start_detached, terminate
from txmon.core.progress import Progress
from txmon.core.settings import Settings
from txmon.core.warehouse import grant_dagster_reads, migrate

if TYPE_CHECKING:
    from types import ModuleType


def _runner() -> ModuleType:
    """orchestration.runner, imported when a command runs, not when its arguments are parsed: it loads Dagster,
    dbt and Great Expectations (seconds), and a bad argument is answered at once."""
    return importlib.import_module("orchestration.runner")


def _published_since(settings: Settings, since: datetime) -> int:
    """Partitions the CLI has published since ``since`` (every database's publication log)."""
    count = 0
    for dsn in settings.databases():
        with connect(dsn, autocommit=True, purpose="progress") as conn:
            row = conn.execute(
                """SELECT count(DISTINCT (partition_date, region)) FROM reporting.publication_log
                   WHERE published_at >= %s AND launched_by LIKE 'txmon CLI%%'""",
                (since,),
            ).fetchone()
            count += row[0] if row else 0
    return count


def _materialize(settings: Settings, partitions: list[tuple[date, str]], *, full: bool = True) -> int:
    for day, region in partitions:
        try:
            check_partition(settings, day, region)
        except ValueError as exc:
            raise BadArgument(f"txmon: {exc}") from None
    started = datetime.now(UTC)
    with Progress("partitions published", len(partitions)) as progress:
        progress.follow(lambda: (_published_since(settings, started), ""), interval=2.0)
        outcomes = _runner().materialize(settings, partitions, full=full)
    for outcome in outcomes:
        click.echo(outcome.line())
    failed = [o for o in outcomes if not o.success]
    if failed:
        click.echo(f"txmon: {len(failed)} of {len(outcomes)} partitions failed", err=True)
        return EXIT_FAILURE
    return 0


@click.command("materialize")
@click.option("--date", "day", type=DAY, required=True, help="the UTC day")
@click.option("--region", required=True)
@pass_settings
def materialize(settings: Settings, day: date, region: str) -> int:
    return _materialize(settings, [(day, region)])


@click.command("publish")
@click.option("--date", "day", type=DAY, required=True, help="the UTC day")
@click.option("--region", required=True)
@pass_settings
def publish(settings: Settings, day: date, region: str) -> int:
    return _materialize(settings, [(day, region)], full=False)


@click.command("backfill")
@click.option("--from", "first", type=DAY, required=True, help="the first day")
@click.option("--to", "last", type=DAY, required=True, help="the last day (inclusive)")
@click.option("--region", help="one region (default: all)")
@pass_settings
def backfill(settings: Settings, first: date, last: date, region: str | None) -> int:
    try:
        span = days(first, last)
    except ValueError as exc:
        raise BadArgument(f"txmon backfill: {exc}") from None
    regions = [region] if region else list(settings.regions)
    return _materialize(settings, [(day, r) for day in span for r in regions])


@click.command("dagster-setup")
@pass_settings
def dagster_setup(settings: Settings) -> int:
    _, instance = _runner().setup(settings)
    instance.dispose()
    grant_dagster_reads(settings)  # its tables exist now (compose's Dagster containers have no admin role)
    click.echo(f"Dagster home {dagster_env(settings)['DAGSTER_HOME']} ready")
    return 0


def dagster_process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of Dagster's processes (and of the others `txmon run` starts): this one's without its secrets
    (``child_env``: none of them reads the API's keys or the admin's password), with the Dagster home, the ingest
    mode and the regional databases of ``settings`` (the daemon's sensors read their settings from it), and
    ``extra``."""
    return child_env(**dagster_env(settings), **flag_env(settings), **region_env(settings), **extra)


@dataclass
class Dagster:
    """Dagster's webserver and daemon, each in a session of its own (``start_detached``): a Ctrl-C in the terminal
    reaches neither them nor the runs they launch, and `stop_live` ends them in its order."""

    webserver: subprocess.Popen
    daemon: subprocess.Popen

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [self.webserver, self.daemon]


def start_dagster(settings: Settings, port: int) -> Dagster:
    """Prepare Dagster (home, manifest, reference models, mart tables), then start its webserver on
    127.0.0.1:``port`` and its daemon, logging to <state dir>/logs."""
    _runner().setup(settings)
    grant_dagster_reads(settings)  # its tables exist now: the API's monitoring role may read its runs
    bin_dir = Path(sys.executable).parent
    log_dir = settings.state_dir / "logs"  # not under DAGSTER_HOME/logs, which Dagster manages
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dagster_process_env(settings)
    module = ["-m", "orchestration.definitions"]
    commands = {
        "webserver": [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *module],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", *module],
    }
    started = {}
    # Dagster's processes and the runs they launch read the secrets of orchestration alone, whoever starts them.
    rules = ruleset(settings, Duty.ORCHESTRATION)
    try:
        for name, argv in commands.items():
            with open(log_dir / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
                started[name] = start_detached(argv, rules, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        if rules is not None:
            os.close(rules)
    return Dagster(**started)


@click.command("dagster")
@click.option("--port", type=int, default=3000, help="Dagster UI port")
@pass_settings
def dagster(settings: Settings, port: int) -> int:
    migrate(settings)  # the components by duty never migrate; the operator's start command does
    started = datetime.now(UTC)
    running = start_dagster(settings, port)
    try:
        click.echo(f"Dagster UI: http://127.0.0.1:{port}  (logs in .txmon/logs; Ctrl-C stops)")
        return supervise(running.processes)
    finally:
        stop_live(settings, started, running)


def stop_live(settings: Settings, started: datetime, dagster: Dagster, others: Sequence[subprocess.Popen] = ()) -> None:
    """Stop the live platform in an order that leaves no run failed or half-way in the UI: the daemon (no run is
    launched, no lease renewed after it) and ``others`` (the generator, the API, a worker); the sensors' leases ended
    (the lander finishes its batch, the live refresh run its cycle); the runs the daemon launched since ``started``
    ended, by themselves or terminated (CANCELED); the webserver last."""
    stop_on_signals()  # a Ctrl-C from now on leaves the stop to its end (it is bounded)
    click.echo("stopping: the runs in flight end their cycle or are canceled")
    terminate([dagster.daemon, *others])
    end_leases(settings)
    try:
        running = _runner().end_runs(settings, started)
    except Exception as exc:  # the storage is away: nothing more to wait for here
        running = [f"not known ({first_line(exc)})"]
    if running:
        click.echo(f"txmon: runs still ending: {', '.join(running)}", err=True)
    terminate([dagster.webserver])
