"""What the service modules share."""

from __future__ import annotations

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
