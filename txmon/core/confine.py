"""A process closed to the secrets of other duties: Linux Landlock, which an unprivileged process applies to itself and
every process it starts, and cannot lift."""
# Landlock rules allow; they do not deny. To close the secrets directory and the password files (``closed``) but the
# few a duty reads (``open_files``), the rules allow reading beneath every entry of each directory on the way from `/`
# down to a closed directory, except the entries on that way, and the open files themselves. Reading a file that
# appears later directly in one of those directories (a new entry of `/`, of the state directory) is refused, so
# ``ruleset`` first makes the folders txmon's processes write in (``STATE_FOLDERS``, Dagster's home, the report
# directories). Writing is not restricted.
# Without Landlock (a kernel before 5.13, a container whose seccomp profile refuses it) a process still gets its
# duty's password files alone, without the kernel's guarantee; ``confine`` says which it was.

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from txmon.core import credentials
from txmon.core.credentials import Duty
from txmon.core.settings import GLOBAL_REPORTS, Settings

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same number on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_READ_FILE = 1 << 2  # LANDLOCK_ACCESS_FS_READ_FILE
_PR_SET_NO_NEW_PRIVS = 38
# What txmon's processes create in the state directory, made before it is closed (see above).
STATE_FOLDERS = ("dbt", "logs", "landers", "metrics")


class _Ruleset(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 where there is none."""
    version = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def closed(settings: Settings) -> tuple[Path, ...]:
    """What no process of a duty may read but the files of its own (``credentials.readable``, allowed one by one):
    the secrets, the password files, and the signing key wherever it is kept."""
    return (settings.secrets_dir, settings.pgpass_dir, settings.report_signing_key_path)


def _allowed(closed_paths: Iterable[Path], open_files: Iterable[Path]) -> list[Path]:
    """Every path beneath which reading is allowed: the entries beside the way down to each closed path, and
    ``open_files``."""
    shut = {Path(os.path.realpath(p)) for p in closed_paths if os.path.lexists(p)}
    on_the_way = {ancestor for p in shut for ancestor in (p, *p.parents)}
    allowed: list[Path] = []
    for directory in sorted(on_the_way - shut):
        for entry in os.scandir(directory):
            path = Path(entry.path)
            if path not in on_the_way:
                allowed.append(path)
    allowed += [Path(os.path.realpath(f)) for f in open_files if os.path.exists(f)]
    return allowed


def ruleset(settings: Settings, duty: Duty) -> int | None:
    """A Landlock ruleset (its file descriptor, the caller's to close) closing every secret but ``duty``'s
    (``credentials.readable``) to reading; None for ``Duty.ADMIN`` or where the kernel has no Landlock. The state
    directory's own folders are made first (see above)."""
    if duty is Duty.ADMIN or abi_version() < 1:
        return None
    for folder in (
        *(settings.state_dir / name for name in STATE_FOLDERS),
        settings.dagster_home,
        *(settings.report_dir(scope) for scope in (*settings.regions, GLOBAL_REPORTS)),
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # not ours to make (a mount elsewhere): whoever writes there reports it
    attr = _Ruleset(_READ_FILE)
    fd = _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0)
    if fd < 0:
        return None  # refused (a seccomp profile): as without Landlock
    try:
        for path in _allowed(closed(settings), credentials.readable(settings, duty)):
            try:
                beneath = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # gone meanwhile, or a dangling link: nothing to read there
            try:
                rule = _PathBeneath(_READ_FILE, beneath)
                if _libc.syscall(_SYS_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(beneath)
    except BaseException:
        os.close(fd)
        raise
    return fd


def enter(fd: int) -> None:
    """Bind this thread, and the threads and processes it starts from now on, to the ruleset ``fd`` for good: in a
    process before it starts threads, or in a child between fork and exec (``start_detached``)."""
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # what an unprivileged process must promise first
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if _libc.syscall(_SYS_RESTRICT_SELF, fd, 0) != 0:
        raise OSError(ctypes.get_errno(), f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")


def confine(settings: Settings, duty: Duty) -> bool:
    """Close this process (and what it starts) to every secret but ``duty``'s; nothing for ``Duty.ADMIN``. Whether
    the kernel enforces it (Landlock)."""
    fd = ruleset(settings, duty)
    if fd is None:
        return False
    try:
        enter(fd)
    except OSError as exc:  # refused after all (a seccomp profile): as without Landlock
        logging.getLogger(__name__).warning("not closed to other duties' secrets: %s", exc)
        return False
    finally:
        os.close(fd)
    return True
