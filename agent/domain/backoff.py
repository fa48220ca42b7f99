"""Exponential backoff with jitter, as a value the I/O loops ask for delays.

Every retry loop in the agent (Kafka, Docker, enrolment, crashed root tasks)
uses one of these so that an outage never turns into a tight crash loop, and
many agents restarting at once do not retry in lock-step.
"""

from __future__ import annotations

import dataclasses
import random
import typing


@dataclasses.dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    rand: typing.Callable[[], float] = random.random
    attempt: int = 0

    def next(self) -> float:
        """The delay before the next attempt; grows until ``maximum``."""
        base = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        # Jitter spreads retries of many agents; it never exceeds the maximum.
        spread = base * self.jitter * (2 * self.rand() - 1)
        return max(0.0, min(self.maximum, base + spread))

    def reset(self) -> None:
        self.attempt = 0
