"""Progress lines: drawn on a terminal, nothing at all otherwise (output piped or logged stays parseable)."""

from __future__ import annotations

import io
import time

from txmon.core.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_bar_is_redrawn_in_place_and_steps_keep_their_lines():
    out = Terminal()
    with Progress("landing", 200, stream=out) as progress:
        progress.update(50, "messages")
        progress.line("bench: ingest done in 3s")
        progress.update(200)
    text = out.getvalue()
    assert "\rlanding [#####               ] 50/200 (25%)" in text and "messages" in text
    assert "\rbench: ingest done in 3s " in text  # padded over the bar it replaces, then a newline
    assert "200/200 (100%)" in text and text.endswith("\n")


def test_a_followed_measure_is_polled_until_the_block_ends():
    out = Terminal()
    readings = iter(range(1, 1000))
    with Progress("partitions published", 10, stream=out) as progress:
        progress.follow(lambda: (next(readings), ""), interval=0.05)
        time.sleep(0.3)
    assert out.getvalue().count("\r") >= 3
    assert "/10 (" in out.getvalue()


def test_not_a_terminal_nothing_is_written():
    out = io.StringIO()
    with Progress("landing", 100, stream=out) as progress:
        progress.follow(lambda: (1, ""), interval=0.01)
        progress.update(10)
        progress.line("a step")
        time.sleep(0.05)
    assert out.getvalue() == ""


def test_a_failing_measure_never_stops_the_work():
    out = Terminal()

    def broken() -> tuple[int, str]:
        raise RuntimeError("database away")

    with Progress("landing", 5, stream=out) as progress:
        progress.follow(broken, interval=0.01)
        time.sleep(0.05)
    assert "database away" not in out.getvalue()
