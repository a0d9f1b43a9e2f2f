"""Where txmon's files are: the checkout, and the state directory of the local services; who may read them."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where root keeps the state of a checkout the PostgreSQL server cannot enter: a directory only root may create or
# change (never a shared one such as /tmp or /var/tmp, where another user could make the path first).
SYSTEM_STATE_ROOT = Path("/var/lib/txmon")
PRIVATE_UMASK = 0o077


def private_files() -> None:
    """Every file and directory this process and its children create is their owner's alone (umask 077). Called
    where txmon's processes begin: the CLI, Dagster's code location."""
    os.umask(PRIVATE_UMASK)


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
    per-checkout directory under ``/var/lib/txmon`` (``credentials.ensure`` checks that only root
    may change the way there).
    """
    in_repo = REPO_ROOT / ".txmon"
    if os.geteuid() != 0 or _world_traversable(REPO_ROOT):
        return in_repo
    digest = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:10]
    return SYSTEM_STATE_ROOT / f"checkout-{digest}"


def only_root_may_change(path: Path) -> bool:
    """Whether ``path`` and every directory above it belong to root and no one else may write to them."""
    for each in [path, *path.parents]:
        info = each.lstat()
        if stat.S_ISLNK(info.st_mode) or info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return True


def tighten(root: Path) -> int:
    """Take the group's and others' permissions off every file and directory under ``root`` (one made before txmon
    set umask 077, or by a tool that chose a wider mode); how many were changed. Symbolic links are not followed."""
    changed = 0
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(directory, name)
            try:
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode) and mode & 0o077:
                    os.chmod(path, stat.S_IMODE(mode) & ~0o077)
                    changed += 1
            except FileNotFoundError:  # gone meanwhile (a log rotated, a run's folder removed)
                continue
    return changed
