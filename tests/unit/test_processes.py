"""Children started apart from the terminal (`txmon run`, `txmon dagster`): out of reach of its Ctrl-C, never
left behind by a parent that is killed."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARENT = """
import time
from txmon.core.processes import start_detached
child = start_detached(["sleep", "120"])
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# A parent that blocks and ignores the signals its children end by (as a library it loaded, or the shell that
# started it, may): its detached child still starts with them delivered, and ends with it.
DEAF = """
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
"""


@pytest.mark.parametrize("prelude", ["", DEAF], ids=["plain", "parent-blocks-signals"])
def test_a_detached_child_has_its_own_session_and_ends_with_its_killed_parent(prelude):
    parent = subprocess.Popen([sys.executable, "-c", prelude + PARENT], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert os.getsid(child) == child != os.getsid(0)  # the terminal's Ctrl-C does not reach it
        assert alive(child)
        parent.kill()  # no chance to stop its child
        parent.wait()
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# ---------------------------------------------------------------------------------- children's environments
def test_a_child_gets_no_secret_it_does_not_need_and_urls_without_passwords():
    from txmon.core.processes import API_KEYS, child_env

    base = {
        "PATH": "/usr/bin",
        "TXMON_REGIONS": "EU,US",
        "TXMON_SECRETS_DIR": "/run/secrets",  # where secrets are, not one
        "TXMON_API_KEYS_FILE": "/etc/txmon/api-keys",  # digests, a path
        "TXMON_API_KEYS": '{"k": {"role": "analyst", "regions": ["*"]}}',
        "TXMON_PG_PASSWORD": "admin-s3cret",
        "TXMON_BI_READER_PASSWORD": "bi-s3cret",
        "TXMON_SOME_TOKEN": "tok-s3cret",
        "PGPASSWORD": "pg-s3cret",
        "TXMON_WAREHOUSE_DSN": "postgresql://admin:wh-s3cret@db.example:6543/wh?sslmode=require",
        "TXMON_DAGSTER_DSN": "host=db.example user=admin password=dg-s3cret dbname=dagster",
        "TXMON_REGION_DSNS": '{"EU": "postgresql://admin:eu-s3cret@eu.example/wh", "US": "postgresql://u@us/wh"}',
    }
    env = child_env(base=base, DAGSTER_HOME="/state/dagster")
    assert "s3cret" not in repr(env)
    assert {k: env[k] for k in ("PATH", "TXMON_REGIONS", "TXMON_SECRETS_DIR", "TXMON_API_KEYS_FILE")} == {
        k: base[k] for k in ("PATH", "TXMON_REGIONS", "TXMON_SECRETS_DIR", "TXMON_API_KEYS_FILE")
    }
    assert env["DAGSTER_HOME"] == "/state/dagster"
    assert env["TXMON_WAREHOUSE_DSN"] == "postgresql://admin@db.example:6543/wh?sslmode=require"
    assert json.loads(env["TXMON_REGION_DSNS"]) == {
        "EU": "postgresql://admin@eu.example/wh",
        "US": "postgresql://u@us/wh",
    }
    assert "dbname=dagster" in env["TXMON_DAGSTER_DSN"] and "user=admin" in env["TXMON_DAGSTER_DSN"]
    assert not {"TXMON_API_KEYS", "TXMON_PG_PASSWORD", "TXMON_BI_READER_PASSWORD", "PGPASSWORD"} & set(env)
    # The API keeps its keys, and nothing else secret; extra's URLs lose their passwords too.
    api = child_env(keep=[API_KEYS], base=base, TXMON_REGION_DSNS='{"EU": "postgresql://a:x-s3cret@h/db"}')
    assert api["TXMON_API_KEYS"] == base["TXMON_API_KEYS"] and "TXMON_PG_PASSWORD" not in api
    assert api["TXMON_REGION_DSNS"] == '{"EU": "postgresql://a@h/db"}'
    assert base["TXMON_PG_PASSWORD"] == "admin-s3cret", "the base is not changed"


CHILD_PROBE = """
import os, subprocess, sys
from txmon.core.processes import start_detached
probe = "import os; print(sorted(k for k in os.environ if 'TXMON' in k or 'PG' in k))"
child = start_detached([sys.executable, "-c", probe], stdout=subprocess.PIPE, text=True)
print(child.communicate()[0], end="")
"""


def test_a_detached_child_gets_the_scrubbed_environment_unless_told_otherwise():
    env = {
        **os.environ,
        "TXMON_API_KEYS": "{}",
        "TXMON_PG_PASSWORD": "admin-s3cret",
        "PGPASSWORD": "pg-s3cret",
        "TXMON_TOPIC": "t",
    }
    proc = subprocess.run([sys.executable, "-c", CHILD_PROBE], env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    names = ast.literal_eval(proc.stdout)
    assert "TXMON_TOPIC" in names
    assert not {"TXMON_API_KEYS", "TXMON_PG_PASSWORD", "PGPASSWORD"} & set(names)


PLATFORM = ("txmon", "orchestration", "ingestion", "expectations")
STARTERS = {"Popen", "run", "check_output", "check_call", "call"}


def _starts_a_child_without_an_environment(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    func = node.func
    is_subprocess = isinstance(func.value, ast.Name) and func.value.id == "subprocess" and func.attr in STARTERS
    return is_subprocess and not any(k.arg in ("env", None) for k in node.keywords)


def test_every_child_txmon_starts_gets_an_environment_from_child_env():
    """A child started without ``env=`` would inherit every secret of this process (start_detached's default is
    child_env()); the call that builds its environment is ``child_env`` (directly or through a helper)."""
    missing = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for package in PLATFORM
        for path in sorted((REPO / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if _starts_a_child_without_an_environment(node)
    ]
    assert missing == []


def test_txmon_forgets_its_secrets_once_its_settings_are_read(monkeypatch):
    """What the CLI's own process starts without an environment of its own (multiprocessing's dbt workers and
    resource tracker) inherits none: the settings read before hold what the command needs."""
    from txmon.core.processes import forget_secrets

    monkeypatch.setenv("TXMON_API_KEYS", "{}")
    monkeypatch.setenv("TXMON_PG_PASSWORD", "admin-s3cret")
    monkeypatch.setenv("TXMON_WAREHOUSE_DSN", "postgresql://admin:wh-s3cret@db.example/wh")
    monkeypatch.setenv("TXMON_TOPIC", "t")
    forget_secrets()
    assert "TXMON_API_KEYS" not in os.environ and "TXMON_PG_PASSWORD" not in os.environ
    assert os.environ["TXMON_WAREHOUSE_DSN"] == "postgresql://admin@db.example/wh"
    assert os.environ["TXMON_TOPIC"] == "t"
    child = subprocess.run(
        [sys.executable, "-c", "import os; print('TXMON_PG_PASSWORD' in os.environ)"], capture_output=True, text=True
    )
    assert child.stdout.strip() == "False"


def test_stopping_a_service_this_process_started_does_not_wait_out_its_timeout(tmp_path):
    """A service started by this process (`kafka.start()` in a test, `txmon run`) stays a zombie until reaped: its
    stop sees it ended, and reaps it, instead of waiting for /proc to forget it."""
    from txmon.devtools.services.common import alive, stop_process

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "a-service-of-this-test"])
    pid_file = tmp_path / "service.pid"
    pid_file.write_text(str(proc.pid))
    started = time.monotonic()
    stop_process(pid_file, "a-service-of-this-test", timeout=30)
    assert time.monotonic() - started < 30, "it waited out its timeout"
    assert not alive(proc.pid) and not pid_file.exists()
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)  # reaped already
