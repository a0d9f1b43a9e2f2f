"""Secrets stay where they belong on the machine: nothing under the state directory is readable by another user
once the platform has landed, run Dagster and dbt; the processes txmon starts hold no secret they do not need."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from tests.integration.test_ingest import event, line
from tests.integration.test_live import free_port
from txmon.core import credentials
from txmon.core.settings import Role

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


def test_dagster_and_its_processes_get_no_secret_they_do_not_need(platform, tmp_path):
    """`txmon dagster` given the admin's password and the API's keys in its environment: its webserver, daemon,
    code servers and everything they start have neither (nor a password in a database URL)."""
    settings = platform.settings
    admin = credentials.password(settings, Role.ADMIN)  # the real one: `txmon dagster` migrates with it
    assert admin
    key = "a-key-of-the-api-for-this-test-0123456789"
    secret_url = (
        f"postgresql://{settings.pg_user}:{admin}@{settings.pg_host}:{settings.pg_port}/{settings.warehouse_db}"
    )
    extra = {
        "TXMON_PG_PASSWORD": admin,
        "TXMON_API_KEYS": json.dumps({key: {"role": "analyst", "regions": ["*"]}}),
        "TXMON_WAREHOUSE_DSN": secret_url,
        "TXMON_INGEST_MODE": "worker",  # no lander: this test reads environments, it lands nothing
    }
    log_path = tmp_path / "dagster.log"
    with open(log_path, "wb") as log:
        proc = platform.popen(
            "dagster", "--port", str(free_port()), env_extra=extra, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 300
        started: list[int] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"txmon dagster exited {proc.returncode}: {log_path.read_text()[-2000:]}"
            started = descendants(proc.pid)
            commands = [cmdline(pid) for pid in started]
            if (
                any("dagster-webserver" in c for c in commands)
                and any("dagster-daemon" in c for c in commands)
                and any(" api grpc" in c or "code-server" in c for c in commands)  # the code location loaded
            ):
                break
            time.sleep(2)
        else:
            raise AssertionError(f"Dagster did not start: {log_path.read_text()[-2000:]}")
        assert len(started) >= 3
        for pid in started:
            env = environ(pid)
            if not env:
                continue  # ended meanwhile
            assert not {"TXMON_PG_PASSWORD", "TXMON_API_KEYS"} & set(env), cmdline(pid)
            assert admin not in json.dumps(env) and key not in json.dumps(env), cmdline(pid)
            assert env.get("TXMON_WAREHOUSE_DSN", "").startswith(
                f"postgresql://{settings.pg_user}@{settings.pg_host}"
            ), cmdline(pid)
        # txmon itself had them (it migrated as the admin with that URL).
        assert environ(proc.pid)["TXMON_PG_PASSWORD"] == admin
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
