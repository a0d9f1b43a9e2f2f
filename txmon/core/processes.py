"""Child processes and their logs: stop them cleanly, quote the end of a log in an error."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path


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
