"""One secret per duty on the machine too: each process reads the passwords of the roles it connects as and nothing
else, the admin's only for the services and migrations; the kernel (Landlock) holds it where it can."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_ingest import event, line
from tests.integration.test_live import free_port
from tests.integration.test_private_state import cmdline, descendants, environ
from txmon.cli import COMMANDS, DUTIES
from txmon.core import confine, credentials
from txmon.core.credentials import Duty
from txmon.core.settings import Role

LANDLOCK = pytest.mark.skipif(confine.abi_version() < 1, reason="this kernel has no Landlock")

# Run in a process of its own: confine it to a duty (as `txmon <command>` does), then try every secret.
PROBE = """
import json, sys
from txmon.core.confine import confine
from txmon.core.credentials import Duty
from txmon.core.settings import Settings
settings = Settings.from_env()
enforced = confine(settings, Duty(sys.argv[1])) if sys.argv[1] != "-" else None
print(json.dumps({"enforced": enforced, "read": {p: _try(p) for p in sys.argv[2:]}}))
"""
TRY = """
def _try(path):
    try:
        open(path, "rb").read()
        return True
    except PermissionError:
        return False
"""


def secret_files(settings) -> list[Path]:
    return sorted([*settings.secrets_dir.iterdir(), *settings.pgpass_dir.iterdir()])


def probe(platform, duty: str, paths: list[Path]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", TRY + PROBE, duty, *map(str, paths)],
        env=platform.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def test_every_command_has_a_duty_and_only_the_operators_start_commands_are_admin():
    assert DUTIES.keys() == COMMANDS.keys()
    assert {Duty(duty) for duty in DUTIES.values()} <= set(Duty)
    assert {name for name, duty in DUTIES.items() if duty == Duty.ADMIN} == {
        "services",
        "migrate",
        "run",
        "dagster",
        "bench",
    }
    assert DUTIES["api"] == Duty.API and DUTIES["ingest"] == Duty.INGEST
    assert DUTIES["materialize"] == DUTIES["report"] == DUTIES["backtest"] == Duty.ORCHESTRATION


@LANDLOCK
@pytest.mark.parametrize("duty", [d for d in Duty if d is not Duty.ADMIN])
def test_a_process_of_a_duty_reads_its_own_secrets_alone(platform, duty):
    settings = platform.settings
    credentials.ensure(settings)  # every password file, as the services' set-up leaves them
    files = secret_files(settings)
    assert len(files) > 20
    others = [REPO / "pyproject.toml", next((REPO / "txmon").glob("*.py")), settings.dagster_home / "dagster.yaml"]
    result = probe(platform, duty.value, [*files, *[p for p in others if p.exists()]])
    assert result["enforced"] is True
    readable = {str(p) for p in credentials.readable(settings, duty)}
    assert {p for p, ok in result["read"].items() if ok and p in map(str, files)} == readable & set(map(str, files))
    assert all(ok for p, ok in result["read"].items() if p not in map(str, files)), "the rest of the machine reads"
    admin = [str(settings.passfile(Role.ADMIN)), str(settings.secrets_dir / credentials.FILES[Role.ADMIN])]
    assert not any(result["read"].get(p) for p in admin), "the admin's password is not a duty's"
    # Unconfined (the operator's own shell, the services), everything is readable: the test would see a difference.
    assert all(probe(platform, "-", files)["read"].values())


def status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(row.split(":\t", 1) for row in text.splitlines() if ":\t" in row)


def wait_for(what, predicate, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"{what} did not appear within {timeout:.0f} s")


def assert_given_only(pid: int, settings, duty: Duty) -> None:
    """The process was confined when it started (``NoNewPrivs``, which txmon sets for Landlock alone) and what it was
    given names no password file of another duty's roles."""
    if confine.abi_version() >= 1:
        assert status(pid).get("NoNewPrivs", "").strip() == "1", cmdline(pid)
    given = cmdline(pid) + json.dumps(environ(pid))
    others = {role for role in Role} - set(credentials.DUTY_ROLES[duty])
    for role in others:
        assert str(settings.passfile(role)) not in given, (role, cmdline(pid))
    for path in secret_files(settings):
        assert path.read_text().strip() not in given, (path.name, cmdline(pid))


@LANDLOCK
def test_the_api_a_dagster_run_and_an_ingest_process_run_confined_to_their_duty(platform, tmp_path):
    settings = platform.settings
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(line(event(f"duty-{i}")) for i in range(5)) + "\n")
    platform.txmon("produce", str(source))
    started = []
    try:
        ingest = platform.popen("ingest", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        api = platform.popen("api", "--port", str(free_port()), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started += [ingest, api]
        # A Dagster run: `txmon materialize` runs one in its own process.
        run = platform.popen(
            "materialize", "--date", "2026-11-24", "--region", "EU", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started.append(run)
        for proc, duty in ((ingest, Duty.INGEST), (api, Duty.API), (run, Duty.ORCHESTRATION)):
            wait_for(f"{proc.args[3]} confined", lambda p=proc: status(p.pid).get("NoNewPrivs", "").strip() == "1")
            assert_given_only(proc.pid, settings, duty)
            for child in descendants(proc.pid):  # dbt, the ingest processes: the same duty
                if status(child):
                    assert_given_only(child, settings, duty)
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-2000:]
        # The ingest process landed as its role, from its own password file.
        wait_for("the events landed", lambda: platform.query("SELECT count(*) FROM staging.transactions")[0][0] >= 5)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=120)


def test_dagster_started_by_the_admins_command_is_confined_to_orchestration_and_given_no_other_secret(
    platform, tmp_path
):
    """`txmon dagster` migrates as the admin, given the admin's password, the API's keys and a password in a database
    URL in its environment: its webserver, daemon and code servers (and what they start) have none of them, and are
    closed to every secret but orchestration's from their start (Landlock, where the kernel has it)."""
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
        "TXMON_INGEST_MODE": "worker",  # no lander: this test reads processes, it lands nothing
    }
    log_path = tmp_path / "dagster.log"
    with open(log_path, "wb") as log:
        proc = platform.popen(
            "dagster", "--port", str(free_port()), env_extra=extra, stdout=log, stderr=subprocess.STDOUT
        )
    try:

        def dagster_processes() -> list[int]:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            pids = descendants(proc.pid)
            commands = " ".join(cmdline(pid) for pid in pids)
            ready = "dagster-webserver" in commands and "dagster-daemon" in commands and " api grpc" in commands
            return pids if ready else []

        pids = wait_for("Dagster's processes", dagster_processes, timeout=300)
        dagster = [pid for pid in pids if any(name in cmdline(pid) for name in ("dagster-webserver", "dagster-daemon"))]
        assert len(dagster) >= 2
        confined = {*dagster, *(child for each in dagster for child in descendants(each))}
        for pid in {*pids, *confined}:
            env = environ(pid)
            if not env:
                continue  # ended meanwhile
            assert not {"TXMON_PG_PASSWORD", "TXMON_API_KEYS"} & set(env), cmdline(pid)
            assert admin not in json.dumps(env) and key not in json.dumps(env), cmdline(pid)
            assert env.get("TXMON_WAREHOUSE_DSN", "").startswith(
                f"postgresql://{settings.pg_user}@{settings.pg_host}"
            ), cmdline(pid)
            if pid in confined:
                assert_given_only(pid, settings, Duty.ORCHESTRATION)
        # txmon itself had them (it migrated as the admin with that URL), and is not confined.
        assert environ(proc.pid)["TXMON_PG_PASSWORD"] == admin
        assert status(proc.pid).get("NoNewPrivs", "").strip() == "0", "the admin's own command is not confined"
    finally:
        proc.terminate()
        proc.wait(timeout=240)
