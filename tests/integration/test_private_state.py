"""Secrets stay where they belong on the machine: nothing under the state directory is readable by another user
once the platform has landed, run Dagster and dbt (what each process is given: test_duties.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.integration.test_ingest import event, line

DAY = "2026-11-24"


def readable_by_others(root: Path) -> list[str]:
    """Every file and directory under ``root`` with a permission for its group or others (the state directory
    itself may be 0711 when txmon runs as root: the server, another user, must traverse it)."""
    found = []
    if stat.S_IMODE(root.stat().st_mode) not in (0o700, 0o711):
        found.append(f"{root} {stat.S_IMODE(root.stat().st_mode):04o}")
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(directory, name)
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(f"{path} {stat.S_IMODE(mode):04o}")
    return found


def test_nothing_under_the_state_dir_is_readable_by_another_user(platform, tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(line(event(f"private-{i}")) for i in range(3)) + "\n{not json\n")
    platform.txmon("produce", str(source))
    platform.txmon("ingest", "--until-idle")
    platform.txmon("materialize", "--date", DAY, "--region", "EU")  # a Dagster run: its folder, its compute logs
    state = platform.settings.state_dir
    home = state / f"dagster-{platform.settings.dagster_db}"
    assert list(home.glob("storage/*/compute_logs")), "a run wrote its compute logs"
    for kind in ("secrets", "pgpass.d", "postgres/data", "kafka/data", "dbt"):
        assert (state / kind).exists(), kind
    assert readable_by_others(state) == []


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
