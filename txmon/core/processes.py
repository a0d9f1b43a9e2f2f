"""Child processes and their logs: the environment they get (no secret they do not need), start them apart from the
terminal, stop them cleanly, quote the end of a log in an error."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from txmon.core.confine import enter
from txmon.core.urls import without_password

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends

# Secrets a child never gets unless it is named as needing one (``child_env``'s ``keep``): the API's keys, the admin's
# and bi_reader's passwords, libpq's password variable, and any TXMON_ variable named like a password or token. The
# roles' passwords reach the children that connect through the passfile (<state dir>/pgpass), not the environment.
SECRET_VARIABLES = frozenset({"TXMON_API_KEYS", "TXMON_PG_PASSWORD", "TXMON_BI_READER_PASSWORD", "PGPASSWORD"})
SECRET_WORDS = ("PASSWORD", "TOKEN")
# Database URLs children need to find the databases, without the password a configured URL may carry: a child
# connects as a role by duty, whose password comes from the passfile; only the admin (migrations, in txmon's own
# process) uses a configured URL's password.
URL_VARIABLES = ("TXMON_WAREHOUSE_DSN", "TXMON_DAGSTER_DSN")
URL_MAP_VARIABLES = ("TXMON_REGION_DSNS",)
API_KEYS = "TXMON_API_KEYS"  # `keep` it for the HTTP API, the one child that reads it


def secret(name: str) -> bool:
    """Whether an environment variable holds a secret a child does not get by default."""
    return name in SECRET_VARIABLES or (name.startswith("TXMON_") and any(w in name for w in SECRET_WORDS))


def child_env(keep: Collection[str] = (), base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child txmon starts (Dagster, dbt, ingest processes, the API, the services): ``base``
    (default this process's) without its secrets but those in ``keep``, with ``extra``; database URLs (``extra``'s
    too) without their passwords. The one way txmon builds a child's environment."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k in keep or not secret(k)}
    env.update(extra)
    for name in URL_VARIABLES:
        if env.get(name):
            env[name] = without_password(env[name])
    for name in URL_MAP_VARIABLES:
        if env.get(name):
            try:
                urls = json.loads(env[name])
                env[name] = json.dumps({k: without_password(str(v)) for k, v in urls.items()})
            except (ValueError, AttributeError):
                del env[name]  # not the JSON object the settings read: it reaches no child
    return env


def forget_secrets() -> None:
    """This process's environment as ``child_env`` makes a child's, once its settings are read (they hold what it
    needs): the processes it starts without an environment of their own (multiprocessing's: dbt's workers, its
    resource tracker) and the settings it reads again (Dagster's resource in an in-process run) see no secret."""
    scrubbed = child_env()
    for name in [name for name in os.environ if name not in scrubbed]:
        del os.environ[name]
    for name, value in scrubbed.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, joined on one line, for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def signal_when_parent_ends(sig: signal.Signals, ruleset: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the process starting it ends, however it ends (SIGKILL
    included; Linux only). A parent already gone by then sends it at once. With a Landlock ``ruleset``
    (txmon.core.confine), the child is bound to it before it runs anything."""
    parent = os.getpid()

    def arm() -> None:
        # A fresh start for the signals it must end by: none blocked or ignored because the parent (or a library
        # loaded in it) blocked or ignored them; the parent's mask and ignored signals would otherwise survive exec.
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        for each in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(each, signal.SIG_DFL)
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, sig)
            if os.getppid() != parent:
                os.kill(os.getpid(), sig)
        if ruleset is not None:
            enter(ruleset)

    return arm


def start_detached(argv: Sequence[str], ruleset: int | None = None, **popen: Any) -> subprocess.Popen:
    """Start ``argv`` in a session of its own (its stdin /dev/null unless given): a Ctrl-C in the terminal reaches
    this process alone, which stops the child when and how it chooses (`terminate`); the child gets SIGTERM if this
    process ends without doing so. Its environment is ``child_env()`` unless given; with a Landlock ``ruleset``
    (txmon.core.confine.ruleset), it is closed to the secrets of other duties from its start."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    popen.setdefault("env", child_env())
    arm = signal_when_parent_ends(signal.SIGTERM, ruleset)
    return subprocess.Popen(argv, start_new_session=True, preexec_fn=arm, **popen)


def terminate(children: Sequence[subprocess.Popen], timeout: float | None = 60) -> None:
    """SIGTERM every child still running, then wait for each (killed after ``timeout`` seconds, if given)."""
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGTERM)
    for c in children:
        try:
            c.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()
