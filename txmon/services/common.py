"""What the service modules share."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not be brought to the asked state. The message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    detail: str


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, joined on one line, for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


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
