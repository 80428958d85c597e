"""Token-bucket rate limiting for the gateway: per API key, and per client address for failed authentications."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One bucket per key: ``rate`` tokens/second refill, at most ``burst`` tokens banked.

    With ``max_keys``, buckets that have refilled (they hold no state worth keeping) are dropped
    once there are more keys than that, so keys a client chooses (its address) cannot grow the
    table without bound; if every bucket is still draining, the least recently used half goes.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)

    def take(self, key: str) -> float:
        """Spend one token for ``key``; return 0.0 if allowed, else seconds until a token is available."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if self.max_keys is not None and len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = self._refilled(bucket, now)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token (0.0 if it has one now), spending none."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = self._refilled(bucket, self._clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full = [key for key, bucket in self._buckets.items() if self._refilled(bucket, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        if self.max_keys is not None and len(self._buckets) >= self.max_keys:
            by_age = sorted(self._buckets, key=lambda key: self._buckets[key].updated)
            for key in by_age[:len(by_age) // 2]:
                del self._buckets[key]
