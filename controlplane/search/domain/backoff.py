"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter").

Full jitter spreads the retries of many consumers that failed at the same
moment (an Elasticsearch restart) instead of having them return in lockstep.
"""

from __future__ import annotations

import random
import typing


def delays(initial: float, maximum: float, *, rand: typing.Callable[[], float] = random.random) -> typing.Iterator[float]:
    """Endless delays: the n-th is uniform in [0, min(maximum, initial * 2**n)]."""
    ceiling = initial
    while True:
        yield rand() * ceiling
        ceiling = min(maximum, ceiling * 2)
