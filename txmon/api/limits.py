"""Rate limits: a token bucket per API key and per client address, in the API's process."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

# Buckets kept per limit; at this many, full ones (of holders idle for a minute) are dropped, then the least
# recently used.
MAX_BUCKETS = 10_000


class Limited(Exception):
    """A request over its limit: 429, ``retry_after`` whole seconds until one is allowed again."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimit:
    """``per_minute`` requests a minute for each holder (a key's digest, an address): a bucket of that many
    tokens, refilled continuously at ``per_minute / 60`` a second, one token a request. A burst may spend a
    minute's allowance at once; then requests pass at the refill rate."""

    def __init__(self, per_minute: int, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.what = what  # "this key", "this address": named in the 429's message
        self._clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()  # holder -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, holder: Hashable) -> None:
        """One request of ``holder``; ``Limited`` when its bucket is empty."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(holder, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate)
            if tokens < 1:
                self._buckets[holder] = (tokens, now)
                wait = math.ceil((1 - tokens) / self.rate)
                raise Limited(
                    f"too many requests from {self.what} (at most {self.capacity:.0f} a minute); retry after {wait} s",
                    max(1, wait),
                )
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget(now)
            self._buckets[holder] = (tokens - 1, now)

    def _forget(self, now: float) -> None:
        """Drop the buckets that have refilled (their holders are as new), then the least recently used ones
        down to nine tenths of the bound (so that this scan runs once per many new holders)."""
        full = [h for h, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.capacity]
        for holder in full:
            del self._buckets[holder]
        while len(self._buckets) > MAX_BUCKETS * 9 // 10:
            self._buckets.popitem(last=False)
