"""What the service modules share."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not be brought to the asked state. The message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    detail: str


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is still ours (its command line holds ``marker``)."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if marker.encode() in cmdline else None


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A process that exited but was not yet reaped (a zombie: this process started it and
    has not waited for it) has ended: it is reaped here when it is this process's child."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state != "Z":
        return True
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # another process's child: its parent reaps it
    return False


def stop_process(pid_file: Path, marker: str, timeout: float) -> None:
    """SIGTERM the process of ``pid_file`` (if it is ours), SIGKILL it after ``timeout`` s, forget the file."""
    pid = running_pid(pid_file, marker)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
