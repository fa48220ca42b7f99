"""The circuit breaker in front of Elasticsearch reads.

States::

    closed     requests go to Elasticsearch; ``failures`` errors or timeouts in a
               row open the circuit
    open       requests go straight to PostgreSQL, until ``reset`` seconds passed
    half_open  one request (the probe) tries Elasticsearch; success closes the
               circuit, failure opens it again for another ``reset`` seconds

The breaker is a plain object driven by the caller's clock, so its decisions
are testable without waiting; one instance per process is shared by all
requests (asyncio: no locking needed, nothing here awaits).
"""

from __future__ import annotations

import enum
import typing


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    def __init__(self, failures: int, reset: float, clock: typing.Callable[[], float]) -> None:
        if failures < 1 or reset <= 0:
            raise ValueError("failures must be >= 1 and reset > 0")
        self.threshold = failures
        self.reset = reset
        self.clock = clock
        self.state = State.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = False

    def allow(self) -> bool:
        """Whether this request may try Elasticsearch (at most one probe while half open)."""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN and self.clock() - self.opened_at >= self.reset:
            self.state = State.HALF_OPEN
            self.probing = False
        if self.state is State.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def succeeded(self) -> None:
        self.state = State.CLOSED
        self.consecutive = 0
        self.probing = False

    def failed(self) -> None:
        self.consecutive += 1
        self.probing = False
        if self.state is State.HALF_OPEN or self.consecutive >= self.threshold:
            self.state = State.OPEN
            self.opened_at = self.clock()

    def abandoned(self) -> None:
        """The probe ended without a verdict (cancelled): let the next request probe."""
        self.probing = False
