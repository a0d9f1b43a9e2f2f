"""Child processes and their logs: start them apart from the terminal, stop them cleanly, quote the end of a log
in an error."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, joined on one line, for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def signal_when_parent_ends(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the process starting it ends, however it ends (SIGKILL
    included; Linux only). A parent already gone by then sends it at once."""
    parent = os.getpid()

    def arm() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, sig)
            if os.getppid() != parent:
                os.kill(os.getpid(), sig)

    return arm


def start_detached(argv: Sequence[str], **popen: Any) -> subprocess.Popen:
    """Start ``argv`` in a session of its own (its stdin /dev/null unless given): a Ctrl-C in the terminal reaches
    this process alone, which stops the child when and how it chooses (`terminate`); the child gets SIGTERM if this
    process ends without doing so."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(argv, start_new_session=True, preexec_fn=signal_when_parent_ends(signal.SIGTERM), **popen)


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
