"""Bad arguments: one line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from txmon.cli import COMMANDS, cli
from txmon.cli.orchestrate import dagster_process_env
from txmon.core.settings import Settings, replace
from txmon.devtools.generate import pattern_of
from txmon.devtools.produce import key_of

CLI_DIR = Path(__file__).resolve().parents[2] / "txmon" / "cli"


def run(*args):
    return subprocess.run([sys.executable, "-m", "txmon.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        [],
        ["services", "sideways"],
        ["generate", "--tps", "-5", "--duration", "1"],
        ["generate", "--tps", "abc", "--duration", "1"],
        ["generate", "--tps", "10", "--duration", "1", "--bad-rate", "2"],
        ["generate", "--tps", "10", "--duration", "1", "--structuring-rate", "1.5"],
        ["generate", "--tps", "10", "--duration", "1", "--velocity-rate", "-0.1"],
        ["generate", "--tps", "10", "--duration", "1", "--bad-rate", "0.5", "--structuring-rate", "0.6"],
        ["generate", "--tps", "10", "--duration", "1", "--start", "2026-11-24T00:00:00"],
        ["generate", "--tps", "10", "--duration", "0", "--output", "/tmp/never.jsonl"],
        ["ingest", "--partitions", "a,b"],
        ["produce", "/no/such/file.jsonl"],
        ["prune", "--days", "3"],
    ],
)
def test_bad_arguments_give_one_line(args):
    proc = run(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bad_setting_is_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "txmon.cli", "info"],
        capture_output=True,
        text=True,
        env={"TXMON_PG_PORT": "nope", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "txmon: TXMON_PG_PORT='nope' is not a whole number"


def test_info_json_has_the_contract_keys():
    info = json.loads(run("info", "--json").stdout)
    assert {"warehouse_dsn", "kafka_bootstrap", "topic", "regions", "suspicious_threshold_usd"} <= set(info)


def test_generate_writes_the_patterns_asked_for(tmp_path):
    out = tmp_path / "stream.jsonl"
    args = ["--tps", "1000", "--duration", "3", "--seed", "1", "--start", "2026-11-24T00:00:00Z", "--output", str(out)]
    proc = run("generate", *args, "--structuring-rate", "0.01", "--velocity-rate", "0.01")
    assert proc.returncode == 0, proc.stderr
    assert "(3000 transactions)" in proc.stdout
    patterns = {pattern_of(json.loads(line)["account_id"]) for line in out.read_text().splitlines()}
    assert patterns == {"structuring", "velocity", None}
    proc = run("generate", *args, "--structuring-rate", "0", "--velocity-rate", "0")
    assert proc.returncode == 0, proc.stderr
    assert {pattern_of(json.loads(line)["account_id"]) for line in out.read_text().splitlines()} == {None}


def test_message_key_is_the_account_id():
    assert key_of(b'{"account_id": "acc-1", "amount": "1"}') == b"acc-1"
    assert key_of(b"not json") is None
    assert key_of(b'["acc-1"]') is None
    assert key_of(b'{"account_id": 7}') is None


def test_help_lists_every_command_without_importing_one():
    probe = (
        "import sys; from txmon.cli import main; code = main(['--help']); "
        "print(sorted(m for m in sys.modules if m.startswith(('txmon.cli.', 'dagster', 'dbt', 'psycopg'))))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    *help_lines, loaded = proc.stdout.strip().splitlines()
    assert loaded == "[]"
    listed = {line.split()[0] for line in help_lines if line.startswith("  ") and line.split()}
    assert set(COMMANDS) <= listed


def test_every_command_loads_under_its_name():
    ctx = click.Context(cli, info_name="txmon")
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name and command.help, name
    assert cli.get_command(ctx, "frobnicate") is None


def test_dagster_gets_the_ingest_mode_in_its_environment_not_through_this_process():
    before = dict(os.environ)
    env = dagster_process_env(replace(Settings.from_env({}), ingest_mode="worker"))
    assert env["TXMON_INGEST_MODE"] == "worker" and env["DAGSTER_HOME"]
    assert dict(os.environ) == before


def _writes_environment(node: ast.AST) -> bool:
    def is_environ(target: ast.AST) -> bool:
        return isinstance(target, ast.Attribute) and target.attr == "environ"

    if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        return any(isinstance(t, ast.Subscript) and is_environ(t.value) for t in targets)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = node.func.value
        return (is_environ(owner) and node.func.attr in ("update", "setdefault", "pop", "clear")) or (
            node.func.attr in ("putenv", "unsetenv")
        )
    return False


@pytest.mark.parametrize("path", sorted(CLI_DIR.glob("*.py")), ids=lambda p: p.name)
def test_the_cli_hands_settings_on_explicitly_never_through_its_own_environment(path):
    tree = ast.parse(path.read_text())
    assert [node.lineno for node in ast.walk(tree) if _writes_environment(node)] == []


def test_the_local_api_key_is_shown_only_where_asked(tmp_path):
    """`txmon api`'s output often goes to a log: it names the key's file; `txmon run` shows the key."""
    from txmon.cli.api import key_line
    from txmon.core import credentials
    from txmon.core.settings import Settings

    settings = Settings.from_env({"TXMON_STATE_DIR": str(tmp_path / "state")})
    credentials.ensure(settings)
    key = credentials.local_api_key(settings)
    assert key and key not in key_line(settings) and str(settings.secrets_dir) in key_line(settings)
    assert key in key_line(settings, show_key=True)
    given = Settings.from_env(
        {
            "TXMON_STATE_DIR": str(tmp_path / "state"),
            "TXMON_API_KEYS": '{"k-123-given-key-of-32-characters": {"role": "analyst", "regions": ["*"]}}',
        }
    )
    assert "k-123" not in key_line(given, show_key=True)
