"""Bad arguments: one line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from txmon.devtools.produce import key_of


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
    import json

    info = json.loads(run("info", "--json").stdout)
    assert {"warehouse_dsn", "kafka_bootstrap", "topic", "regions", "suspicious_threshold_usd"} <= set(info)


def test_message_key_is_the_account_id():
    assert key_of(b'{"account_id": "acc-1", "amount": "1"}') == b"acc-1"
    assert key_of(b"not json") is None
    assert key_of(b'["acc-1"]') is None
    assert key_of(b'{"account_id": 7}') is None
