"""What the command modules share: the settings each command runs with, the project's errors turned into
one-line failures, and the supervision of the child processes of the long-running commands."""

from __future__ import annotations

import functools
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

import click
import psycopg
from confluent_kafka import KafkaException

from txmon.cli import DUTIES, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE
from txmon.core import credentials
from txmon.core.confine import confine
from txmon.core.credentials import Duty
from txmon.core.errors import first_line
from txmon.core.processes import forget_secrets
from txmon.core.settings import ConfigError, Settings
from txmon.devtools.services.common import ServiceError


class Failure(click.ClickException):
    """A failure, reported as its message alone (one line, worded for the user) with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BadArgument(Failure):
    """An argument found wrong by the command itself (a missing file, a partition the topic lacks): exit 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def pass_settings(command: Callable[..., int | None]) -> Callable[..., int | None]:
    """Call ``command(settings, **arguments)`` with the settings from the environment (and the state dir, secrets and
    password files they name, created when missing), the process closed to the secrets of other duties than its
    command's (``DUTIES``); the project's errors end as a `Failure`."""

    @functools.wraps(command)
    def with_settings(*args, **kwargs) -> int | None:
        try:
            settings = Settings.from_env()
            duty = Duty(DUTIES[click.get_current_context().command_path.split()[1]])
            credentials.ensure(settings, duty)
            confine(settings, duty)
            forget_secrets()  # the settings hold them; whatever this process starts from now on does not get them
            return command(settings, *args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own (the latter two are RuntimeErrors)
        except (ConfigError, ServiceError) as exc:
            raise Failure(f"txmon: {exc}") from None
        except psycopg.OperationalError as exc:
            first = first_line(exc, "connection failed")
            raise Failure(f"txmon: PostgreSQL is not reachable ({first}); is `txmon services up` done?") from None
        except KafkaException as exc:
            raise Failure(f"txmon: Kafka error: {exc}; is `txmon services up` done?") from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except RuntimeError as exc:  # the project's own errors (IngestError, ProduceError, MigrationError)
            raise Failure(f"txmon: {exc}") from None

    return with_settings


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (the commands then finish what they are doing and exit)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def supervise(
    children: Sequence[subprocess.Popen], duration: float = 0, status: Callable[[], str] | None = None
) -> int:
    """Watch ``children`` until SIGINT or SIGTERM, ``duration`` seconds (0: no limit) or one of them exits
    (then exit 1); print ``status()`` every 5 seconds. The caller then stops them, in its order: a further SIGINT
    or SIGTERM is ignored (that stop is bounded, and a second Ctrl-C would leave it half done)."""
    stop = stop_on_signals()
    deadline = time.monotonic() + duration if duration else None
    while not stop.wait(5):
        exited = [c for c in children if c.poll() is not None]
        if exited:
            name = " ".join(map(str, exited[0].args[:2]))
            click.echo(f"txmon: {name} exited with {exited[0].returncode}; stopping", err=True)
            return EXIT_FAILURE
        if status:
            click.echo(status())
        if deadline and time.monotonic() > deadline:
            break
    return 0
