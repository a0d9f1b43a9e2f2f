"""Stopping the platform as a user does: Ctrl-C on `make run` signals `txmon run` and everything in its
process group while a live refresh run is in flight. The run ends its cycle or is canceled, never failed,
and no process of the platform is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.test_live import free_port
from txmon.devtools.services.monitoring import Monitoring

STOP_SECONDS = 240  # the bound of an orderly stop: the run's cycle or its cancellation, then every process


def refresh_runs(platform, since: datetime) -> list[tuple[str, str]]:
    return platform.query_dagster(
        "SELECT run_id, status FROM runs WHERE pipeline_name = 'refresh_partitions' AND create_timestamp > %s"
        " ORDER BY create_timestamp",
        (since.replace(tzinfo=None),),
    )


def wait_for_started_run(platform, since: datetime, proc: subprocess.Popen, log: Path, timeout: float = 420) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"txmon run exited {proc.returncode}: {log.read_text()[-2000:]}"
        if platform.query_dagster("SELECT to_regclass('runs') IS NOT NULL")[0][0]:
            started = [r for r, s in refresh_runs(platform, since) if s == "STARTED"]
            if started:
                return started[0]
        time.sleep(2)
    raise AssertionError(f"no refresh_partitions run started: {log.read_text()[-2000:]}")


def platform_processes(warehouse_db: str, spared: set[int]) -> list[str]:
    """The processes (but ``spared``) whose environment names this platform's warehouse database."""
    marker = f"TXMON_WAREHOUSE_DB={warehouse_db}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {cmdline[:200]}")
        except OSError:
            continue
    return found


def pid_files(root: Path) -> dict[str, str | None]:
    found = {}
    for name in ("prometheus", "postgres-exporter"):
        try:
            found[name] = (root / f"{name}.pid").read_text()
        except OSError:
            found[name] = None
    return found


def stop_started_monitoring(root: Path, before: dict[str, str | None]) -> None:
    """Stop the Prometheus and exporter that the test's `txmon run` started on its own ports (their pid files
    name them now), and give the pid files back what they held before."""
    for name, pid in pid_files(root).items():
        if pid is None or pid == before[name]:
            continue
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
        if before[name] is None:
            (root / f"{name}.pid").unlink(missing_ok=True)
        else:
            (root / f"{name}.pid").write_text(before[name])


@pytest.mark.parametrize(
    ("grace", "ends"),
    [
        ("30", {"SUCCESS", "CANCELED"}),  # the default: the run ends its cycle, or is canceled if it outlasts it
        ("0", {"CANCELED"}),  # terminated at once: interrupted in its cycle
    ],
    ids=["grace", "no-grace"],
)
def test_ctrl_c_on_run_leaves_no_failed_run_and_no_process(platform, tmp_path, grace, ends):
    since = datetime.now(UTC)
    log_path = tmp_path / "run.log"
    monitoring_root = Monitoring(platform.settings).root
    monitoring_before = pid_files(monitoring_root)
    ports = {
        "TXMON_PROMETHEUS_PORT": str(free_port()),
        "TXMON_POSTGRES_EXPORTER_PORT": str(free_port()),
        "TXMON_INGEST_METRICS_PORT": str(free_port()),
        "TXMON_STOP_GRACE_SECONDS": grace,
    }
    with open(log_path, "wb") as log:
        # Its own process group, as a shell gives a foreground job: the Ctrl-C below reaches all of it.
        run = platform.popen(
            "run",
            "--tps",
            "20",
            "--port",
            str(free_port()),
            "--api-port",
            str(free_port()),
            env_extra=ports,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    spared: set[int] = set()
    try:
        run_id = wait_for_started_run(platform, since, run, log_path)
        time.sleep(3)  # into its cycle
        os.killpg(run.pid, signal.SIGINT)  # the terminal's Ctrl-C: every process of the foreground group
        stopping = time.monotonic()
        code = run.wait(timeout=STOP_SECONDS)
        stopped = time.monotonic() - stopping
        spared = {int(p) for p in pid_files(monitoring_root).values() if p and p.strip().isdigit()}
        left: list[str] = []
        deadline = time.monotonic() + 60  # the lander ends after its batch, by itself
        while time.monotonic() < deadline:
            left = platform_processes(platform.settings.warehouse_db, spared)
            if not left:
                break
            time.sleep(1)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        stop_started_monitoring(monitoring_root, monitoring_before)
    output = log_path.read_text()
    print(f"txmon run stopped in {stopped:.0f}s")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert not left, left

    runs = platform.query_dagster(
        "SELECT run_id, pipeline_name, status FROM runs WHERE create_timestamp > %s",
        (since.replace(tzinfo=None),),
    )
    assert not [r for r in runs if r[2] == "FAILURE"], runs
    assert not [r for r in runs if r[2] in ("STARTING", "STARTED", "CANCELING")], runs
    status = {r: s for r, _, s in runs}
    assert status[run_id] in ends, runs
