"""How txmon words an error in one line (logs, check reasons, skip reasons, the CLI)."""

from __future__ import annotations


def first_line(error: object, default: str | None = None) -> str:
    """The first line of an error's message; ``default`` (or the error's type name) when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else (default or type(error).__name__)
