"""Progress of long commands on a terminal (one line redrawn in place on stderr); nothing at all when
stderr is not a terminal, so that output piped or logged stays parseable."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO


class Progress:
    """``with Progress("landing", total) as p: p.update(done)``; or ``p.follow(measure)`` to poll
    ``measure() -> (done, detail)`` every ``interval`` seconds in a thread until the block ends."""

    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.shown = self.stream.isatty()
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def update(self, done: int, detail: str = "") -> None:
        if not self.shown:
            return
        elapsed = time.monotonic() - self.started
        if self.total:
            share = min(1.0, done / self.total)
            bar = "#" * int(share * 20)
            text = f"{self.label} [{bar:<20}] {done:,}/{self.total:,} ({share:.0%}) {elapsed:.0f}s"
        else:
            text = f"{self.label}: {done:,} {elapsed:.0f}s"
        text = f"{text}  {detail}".rstrip()
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def line(self, text: str) -> None:
        """A line of its own (a step done), kept above the redrawn one."""
        if self.shown:
            self.stream.write("\r" + text.ljust(self._width) + "\n")
            self.stream.flush()
            self._width = 0

    def follow(self, measure: Callable[[], tuple[int, str]], interval: float = 1.0) -> None:
        if not self.shown:
            return

        def poll() -> None:
            while not self._stop.wait(interval):
                try:
                    self.update(*measure())
                except Exception:  # a failed reading is skipped: progress must never stop the work
                    continue

        self._thread = threading.Thread(target=poll, name="txmon-progress", daemon=True)
        self._thread.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.shown and self._width:
            self.stream.write("\n")
            self.stream.flush()
