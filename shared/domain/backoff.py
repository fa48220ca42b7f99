"""The one backoff policy of every retry loop: exponential growth to a cap, with jitter, starting over after health.

A :class:`Policy` is the pure rule (the n-th delay from a random number in
[0, 1)); a :class:`Backoff` is the counter one loop keeps: ``next()`` after a
failure, ``reset()`` after a success, or ``next(healthy_for=…)`` where a
failure is only noticed later (a supervised task that ran a while and then
crashed). Callers differ only in parameters:

* ``jitter``: the delay lands uniformly within ± this fraction of the
  exponential value, so many processes that failed together (an agent fleet
  after a broker restart) do not retry in lock-step; 0 gives exact delays
  where one process retries alone or a person reads them;
* ``full_jitter``: uniform in [0, the exponential value] instead ("full
  jitter", the widest spread), for the many consumers of one Elasticsearch;
* ``healthy_after``: a failure after this long of health starts from
  ``initial`` again instead of from where the last outage left off.

No delay ever exceeds ``maximum``.
"""

from __future__ import annotations

import dataclasses
import random
import typing


@dataclasses.dataclass(frozen=True)
class Policy:
    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.2
    full_jitter: bool = False
    healthy_after: float | None = None

    def __post_init__(self) -> None:
        # A maximum below initial is a setting's choice (a short cap), not an error: it caps from the start.
        if self.initial < 0 or self.maximum < 0:
            raise ValueError(f"backoff needs delays >= 0, got initial={self.initial}, maximum={self.maximum}")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff needs factor >= 1 and 0 <= jitter <= 1, got factor={self.factor}, jitter={self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The exponential value before jitter: ``initial * factor**attempt``, capped at ``maximum``."""
        try:
            return min(self.maximum, self.initial * self.factor ** max(attempt, 0))
        except OverflowError:  # a very long outage: the cap was reached long ago
            return self.maximum

    def delay(self, attempt: int, rand: float) -> float:
        """The delay before retry number ``attempt`` (0-based), given ``rand`` uniform in [0, 1)."""
        ceiling = self.ceiling(attempt)
        if self.full_jitter:
            return rand * ceiling
        spread = ceiling * self.jitter * (2 * rand - 1)
        return max(0.0, min(self.maximum, ceiling + spread))


@dataclasses.dataclass
class Backoff:
    """One retry loop's place in its policy."""

    policy: Policy
    rand: typing.Callable[[], float] = random.random
    attempt: int = 0

    def next(self, *, healthy_for: float = 0.0) -> float:
        """The delay before the next attempt; ``healthy_for``: how long things went well before this failure."""
        if self.policy.healthy_after is not None and healthy_for >= self.policy.healthy_after:
            self.reset()
        delay = self.policy.delay(self.attempt, self.rand())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """It worked: the next failure starts from ``initial``."""
        self.attempt = 0


def exponential(
    initial: float,
    maximum: float,
    *,
    jitter: float = 0.2,
    full_jitter: bool = False,
    healthy_after: float | None = None,
    rand: typing.Callable[[], float] = random.random,
) -> Backoff:
    """A fresh :class:`Backoff` that doubles from ``initial`` to ``maximum``."""
    return Backoff(Policy(initial, maximum, jitter=jitter, full_jitter=full_jitter, healthy_after=healthy_after), rand)
