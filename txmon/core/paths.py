"""Where txmon's files are: the checkout, and the state directory of the local services."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _world_traversable(path: Path) -> bool:
    """True when every directory from / down to ``path`` can be entered by any user."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def default_state_dir() -> Path:
    """Where services keep their data and logs.

    ``<repo>/.txmon`` unless the PostgreSQL server (which runs as the unprivileged ``postgres``
    user when txmon runs as root) could not enter it, e.g. a checkout under ``/root``; then a
    per-checkout directory under ``/var/tmp``.
    """
    in_repo = REPO_ROOT / ".txmon"
    if os.geteuid() != 0 or _world_traversable(REPO_ROOT):
        return in_repo
    digest = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"txmon-{digest}"
