"""Every module of the packages says what it is for in a docstring of one to three lines.
(Design notes that need more room go in a comment block right after it.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("txmon", "contracts", "ingestion", "expectations", "orchestration", "bench")
MAX_LINES = 3


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_module_docstring_says_what_it_is_for(path: Path):
    docstring = ast.get_docstring(ast.parse(path.read_text(), filename=str(path)))
    assert docstring and docstring.strip(), f"{path.relative_to(REPO)} has no module docstring"
    lines = docstring.splitlines()
    assert len(lines) <= MAX_LINES, f"{path.relative_to(REPO)}: module docstring of {len(lines)} lines"
