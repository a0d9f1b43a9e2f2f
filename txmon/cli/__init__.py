"""The `txmon` command: the root group, which imports a command's module only when that command runs,
and `main`, which ends every failure the user can cause in one line on stderr and a non-zero exit."""

from __future__ import annotations

import importlib
import logging
import signal
from collections.abc import Mapping

import click

from txmon.core.paths import private_files

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# name: ("module:command", one-line help). The help is kept here so that `txmon --help` imports no
# command module (some import Dagster, dbt and Great Expectations, which take seconds); the order is
# the order of `txmon --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "services": ("txmon.cli.services:services", "start, stop or check the local PostgreSQL and Kafka"),
    "info": ("txmon.cli.services:info", "print the effective settings"),
    "migrate": ("txmon.cli.services:migrate", "apply pending warehouse migrations to every regional database"),
    "produce": ("txmon.cli.data:produce", "send each line of a JSON-lines file as one event"),
    "generate": ("txmon.cli.data:generate", "synthetic payments, to the topic or to a file"),
    "ingest": ("txmon.cli.ingest:ingest", "land events from the topic in PostgreSQL"),
    "materialize": (
        "txmon.cli.orchestrate:materialize",
        "materialize one region-day partition of every mart, checks included",
    ),
    "publish": (
        "txmon.cli.orchestrate:publish",
        "refresh one region-day partition from its watermark (only what landed since its last build), "
        "re-check it and publish it to reporting if it passes",
    ),
    "backfill": (
        "txmon.cli.orchestrate:backfill",
        "materialize a range of days (inclusive) for one or all regions",
    ),
    "dagster": (
        "txmon.cli.orchestrate:dagster",
        "run the Dagster UI and daemon (sensors, automation, schedules) to Ctrl-C",
    ),
    "dagster-setup": (
        "txmon.cli.orchestrate:dagster_setup",
        "prepare Dagster's home, the dbt manifest, reference models and mart tables",
    ),
    "api": ("txmon.cli.api:api", "the read-only HTTP API and the monitoring web page, to Ctrl-C"),
    "api-key": (
        "txmon.cli.api:api_key",
        "make a key of the HTTP API (or digest one from stdin): its line for TXMON_API_KEYS_FILE",
    ),
    "run": (
        "txmon.cli.run:run",
        "services up, synthetic payments, ingestion, Dagster UI and daemon, live status (Ctrl-C stops)",
    ),
    "status": ("txmon.cli.ingest:status", "rows landed, quarantined and consumer lag"),
    "prune": (
        "txmon.cli.maintenance:prune",
        "delete what is past its retention (raw events, quarantine, duplicates, batch log, Dagster "
        "runs and check evaluations), as the daily prune_dagster_history job does",
    ),
    "report": (
        "txmon.cli.report:report",
        "build a published region-day's signed report package, or `txmon report verify PATH`",
    ),
    "backtest": (
        "txmon.cli.backtest:backtest",
        "replay the suspicious-activity rules over landed history with other parameters (nothing is published): "
        "per day, region and reason, the transactions and accounts they flag",
    ),
    "bench": (
        "txmon.cli.bench:bench",
        "benchmarks on the local services (own database and topics): table + JSON in bench/results",
    ),
    "dbt": ("txmon.cli.dbt:dbt", "run dbt on the project with txmon's connection and vars, e.g. `txmon dbt build`"),
}
# What each command does, which decides the secrets it may read (txmon.core.credentials.DUTY_ROLES,
# txmon.core.confine): only the services and migrations (and the commands that start them) read the admin's.
DUTIES: dict[str, str] = {  # txmon.core.credentials.Duty's values (its module is not imported for `--help`)
    "services": "admin",
    "info": "offline",
    "migrate": "admin",
    "produce": "producer",
    "generate": "producer",
    "ingest": "ingest",
    "materialize": "orchestration",
    "publish": "orchestration",
    "backfill": "orchestration",
    "dagster": "admin",  # migrates; Dagster's own processes are closed to all but orchestration's secrets
    "dagster-setup": "orchestration",
    "api": "api",
    "api-key": "offline",
    "run": "admin",  # starts the services; each process it starts is closed to all but its duty's secrets
    "status": "orchestration",
    "prune": "orchestration",
    "report": "orchestration",
    "backtest": "orchestration",
    "bench": "admin",
    "dbt": "orchestration",
}


class LazyGroup(click.Group):
    """A group whose commands are imported by name on first use (click's lazy-loading pattern)."""

    def __init__(self, *args, lazy_commands: Mapping[str, tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy_commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            return None
        target, summary = self.lazy_commands[cmd_name]
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        if command.help is None:  # the one-line help above is its help too
            command.help = summary
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the summaries above, without importing any command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in self.lazy_commands.items()])


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=False,  # no command: the one-line usage error below, not the help page
)
def cli() -> None:
    """Transaction monitoring data platform."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. Commands return theirs (0 when they return nothing)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())  # Ctrl-C and SIGTERM reach it, whatever its parent had blocked
    private_files()  # what txmon and its children (Dagster, dbt, the services) write is their owner's alone
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("txmon").setLevel(logging.INFO)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    try:
        code = cli.main(args=argv, prog_name="txmon", standalone_mode=False)
    except click.UsageError as exc:  # bad arguments, as click parses them: one line, not click's usage block
        where = exc.ctx.command_path if exc.ctx is not None else "txmon"
        click.echo(f"{where}: {_one_line(exc.format_message())} (see `{where} --help`)", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:  # the commands' own failures, already worded for the user
        click.echo(exc.format_message(), err=True)
        return exc.exit_code
    except click.Abort:  # Ctrl-C outside a command (while parsing or loading one)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else 0
