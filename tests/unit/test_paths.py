"""Where the state lives and who may read it: umask 077 from txmon's entry points, no path another user can
make first, older files made private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from tests.conftest import REPO
from txmon.core import credentials, paths
from txmon.core.settings import ConfigError, Settings


def test_txmon_makes_its_files_private_whatever_umask_it_was_started_with(tmp_path):
    code = "import os; from txmon.cli import main; main(['info']); print(oct(os.umask(0)))"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TXMON_")}, "TXMON_STATE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "0o77"


def test_root_never_falls_back_to_a_shared_directory(monkeypatch):
    monkeypatch.setattr(paths.os, "geteuid", lambda: 0)
    monkeypatch.setattr(paths, "_world_traversable", lambda path: False)  # a checkout under /root
    state = paths.default_state_dir()
    assert state.parent == paths.SYSTEM_STATE_ROOT == paths.Path("/var/lib/txmon")
    assert state.name.startswith("checkout-")
    monkeypatch.setattr(paths, "_world_traversable", lambda path: True)
    assert paths.default_state_dir() == paths.REPO_ROOT / ".txmon"


@pytest.mark.skipif(os.geteuid() != 0, reason="root's fallback")
def test_the_fallback_is_refused_where_others_may_change_the_way_there(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /var/tmp
    monkeypatch.setattr(credentials, "SYSTEM_STATE_ROOT", shared / "txmon")
    settings = Settings.from_env({"TXMON_STATE_DIR": str(shared / "txmon" / "checkout-x")})
    with pytest.raises(ConfigError, match=f"^{shared} may be changed by users other than root: set TXMON_STATE_DIR"):
        credentials.ensure(settings)
    assert not (shared / "txmon").exists()
    assert paths.only_root_may_change(paths.Path("/usr/lib"))
    assert not paths.only_root_may_change(shared)


def test_tighten_makes_older_files_private_and_follows_no_link(tmp_path):
    (tmp_path / "dagster" / "storage").mkdir(parents=True)
    (tmp_path / "dagster").chmod(0o755)
    (tmp_path / "dagster" / "storage").chmod(0o750)
    log = tmp_path / "dagster" / "storage" / "compute.log"
    log.write_text("x")
    log.chmod(0o644)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_text("not ours to change")
    outside.chmod(0o644)
    (tmp_path / "link").symlink_to(outside)
    assert paths.tighten(tmp_path) == 3  # dagster, storage, compute.log
    assert stat.S_IMODE((tmp_path / "dagster").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "dagster" / "storage").stat().st_mode) == 0o700
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert paths.tighten(tmp_path) == 0
