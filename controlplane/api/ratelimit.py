"""Token buckets per API token, and per client address for unauthenticated calls.

Each bucket holds up to ``burst`` tokens and refills at ``rate`` per second;
a request takes one or is refused with the seconds until one is back
(``Retry-After``). Buckets live in the instance's memory: with N instances
behind a load balancer the effective limit is up to N times the configured
one. That is deliberate — a shared bucket would cost a database write per
request — and the limits are meant as abuse protection, not billing.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing

MAX_BUCKETS = 100_000


# A request allocates nothing here once its bucket exists: the bucket is updated in place (slots, no dict),
# and keys are the caller's own objects (a token's id as it is cached, an address string), never built per request.
@dataclasses.dataclass(slots=True)
class Bucket:
    tokens: float
    stamp: float


class Limiter:
    def __init__(self, rate: float, burst: int, *, clock: typing.Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[typing.Hashable, Bucket] = {}

    def take(self, key: typing.Hashable) -> float:
        """Take one token for ``key``: 0 if allowed, else seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets[key] = Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        # A bucket that would be full again carries no state worth keeping.
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()


class Limits:
    """The two bucket families the API uses."""

    def __init__(self, per_token: Limiter, anonymous: Limiter, *, enabled: bool = True) -> None:
        self.per_token = per_token
        self.anonymous = anonymous
        self.enabled = enabled

    def check(self, *, token_key: typing.Hashable | None, address: str) -> int:
        """0 if allowed, else whole seconds to wait (at least 1)."""
        if not self.enabled:
            return 0
        wait = self.per_token.take(token_key) if token_key is not None else self.anonymous.take(address)
        return 0 if wait <= 0 else max(1, math.ceil(wait))
