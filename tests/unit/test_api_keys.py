"""The HTTP API's keys from TXMON_API_KEYS_FILE: made by `txmon api-key`, honoured by the API by their digests."""

from __future__ import annotations

import os
import subprocess
import sys

from fastapi.testclient import TestClient

from tests.conftest import REPO
from txmon.api.app import create_app
from txmon.core import credentials
from txmon.core.settings import Settings


def txmon(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "txmon.cli", *args],
        env=env,
        input=stdin,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def clean_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXMON_")}
    return {**env, "TXMON_STATE_DIR": str(tmp_path / "state"), "TXMON_PG_PORT": "9"}  # no database: none is needed


def test_a_key_made_by_txmon_api_key_opens_the_api_through_the_file(tmp_path):
    env = clean_env(tmp_path)
    made = txmon("api-key", "--role", "regulator", "--regions", "EU,US", env=env)
    assert made.returncode == 0, made.stderr
    key = made.stderr.strip().rsplit(" ", 1)[-1]
    assert len(key) >= 43 and key not in made.stdout
    assert made.stdout == f"{credentials.api_key_digest(key)} regulator EU,US\n"
    path = tmp_path / "api-keys"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(made.stdout)
    settings = Settings.from_env({"TXMON_STATE_DIR": str(tmp_path / "state"), "TXMON_API_KEYS_FILE": str(path)})
    with TestClient(create_app(settings)) as client:
        assert client.get("/me", headers={"Authorization": f"Bearer {key}"}).json() == {
            "role": "regulator",
            "regions": ["EU", "US"],
        }
        # The file holds digests: the digest itself is no key.
        assert (
            client.get("/me", headers={"Authorization": f"Bearer {credentials.api_key_digest(key)}"}).status_code == 401
        )


def test_txmon_api_key_digests_a_given_key_and_refuses_bad_arguments_in_one_line(tmp_path):
    env = clean_env(tmp_path)
    key = "an-existing-key-moved-to-the-file-0123"
    given = txmon("api-key", "--role", "analyst", "--stdin", env=env, stdin=key + "\n")
    assert (given.returncode, given.stdout, given.stderr) == (0, f"{credentials.api_key_digest(key)} analyst *\n", "")
    for args, stdin, message in (
        (
            ["--role", "analyst", "--stdin"],
            "short-key\n",
            "txmon api-key: the key on stdin is shorter than 32 characters",
        ),
        (["--role", "analyst", "--regions", "MARS"], "", "txmon api-key: regions that are not configured: ['MARS']"),
        (["--role", "analyst", "--regions", ","], "", "txmon api-key: --regions names at least one region (or *)"),
    ):
        proc = txmon("api-key", *args, env=env, stdin=stdin)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", message + "\n")
    refused = txmon("api-key", "--role", "admin", env=env)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1


def test_txmon_api_refuses_a_keys_file_others_may_read(tmp_path):
    env = clean_env(tmp_path)
    path = tmp_path / "api-keys"
    path.write_text(f"{'a' * 64} analyst *\n")
    path.chmod(0o644)
    proc = txmon("api", "--port", "1", env={**env, "TXMON_API_KEYS_FILE": str(path)})
    assert proc.returncode == 1
    assert proc.stderr == (
        f"txmon: TXMON_API_KEYS_FILE {path} has mode 0644: other users may read it; make it 0600 (chmod 600)\n"
    )
