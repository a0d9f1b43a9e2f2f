"""Children started apart from the terminal (`txmon run`, `txmon dagster`): out of reach of its Ctrl-C, never
left behind by a parent that is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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


def test_a_detached_child_has_its_own_session_and_ends_with_its_killed_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=REPO)
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
