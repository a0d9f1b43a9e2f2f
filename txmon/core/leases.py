"""Leases: a file that a live component (a Dagster sensor) renews while it wants a process it started
to keep working; that process stops by itself once the file is gone or stale."""
# Two processes outlive the sensor tick that started them: the lander (`txmon ingest --lease`, kept by kafka_ingestion)
# and the live refresh run (kept following new data by marts_refresh). When the sensor is turned off in the UI or the
# daemon stops, the lease is no longer renewed and they end within LEASE_SECONDS; `txmon dagster` and `txmon run` end
# the leases when they exit.

from __future__ import annotations

import time
from pathlib import Path

from txmon.core.settings import Settings

LEASE_SECONDS = 30.0
REFRESH = "refresh"  # the live refresh run's lease; the lander's is named after its topic


def lease_file(settings: Settings, name: str) -> Path:
    return settings.state_dir / "landers" / f"{settings.warehouse_db}-{name}.lease"


def renew(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def held(path: Path) -> bool:
    """Whether the lease was renewed within LEASE_SECONDS."""
    try:
        return time.time() - path.stat().st_mtime <= LEASE_SECONDS
    except OSError:
        return False


def end_leases(settings: Settings) -> None:
    """End the live platform's leases: the lander finishes its batch and the refresh run its cycle, then they exit."""
    for name in (settings.topic, REFRESH):
        lease_file(settings, name).unlink(missing_ok=True)
