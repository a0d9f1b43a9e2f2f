"""What the service modules share."""

from __future__ import annotations

from dataclasses import dataclass


class ServiceError(RuntimeError):
    """A service could not be brought to the asked state. The message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    detail: str
