"""A reading of the platform's sources shared by every request: taken in a thread of its own, at most once
per interval, however many requests ask for it (what `/metrics` and `/health` answer from)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class Cached(Generic[T]):
    """``read()``'s last value while it is younger than ``seconds``; else one new reading, which every
    request arriving meanwhile awaits too (never a second one in parallel).

    The reading runs in a thread of its own, not in the pool that answers requests, so a slow source (a
    database or Kafka timing out) delays only the requests that wait for it. A reading that raises is not
    kept: the requests that awaited it get the error, the next one reads again.
    """

    def __init__(self, seconds: float, read: Callable[[], T], name: str, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._read = read
        self._clock = clock
        self._name = name
        self._executor: ThreadPoolExecutor | None = None  # started at the first reading, again after close()
        self._value: tuple[float, T] | None = None  # (when read, value)
        self._pending: asyncio.Future[T] | None = None

    async def get(self) -> T:
        """The value: the cached one if fresh, else the reading in flight or a new one (event loop only)."""
        if self._value is not None and self._clock() - self._value[0] < self.seconds:
            return self._value[1]
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._pending)

    async def _refresh(self) -> T:
        try:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
            value = await asyncio.get_running_loop().run_in_executor(self._executor, self._read)
            self._value = (self._clock(), value)
            return value
        finally:
            self._pending = None

    def close(self) -> None:
        """Stop the reading thread (the application's shutdown); a later request starts another."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
