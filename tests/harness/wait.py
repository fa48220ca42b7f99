"""Polling with a deadline: the only way tests wait for something to happen.

``await eventually(check)`` calls ``check`` (a plain function, a coroutine
function, or a lambda returning an awaitable) until it returns a truthy value
without raising, and returns that value. An exception from ``check`` (an
``AssertionError`` included) counts as "not yet". When the deadline passes it
raises ``AssertionError`` carrying the message, the last value and, chained,
the last exception, so a failing test says what it was waiting for and what it
saw instead. ``wait_until`` is the synchronous twin.

A check must return something truthy to pass: a function that only asserts
ends with ``return True``, so that a check returning ``None`` by mistake can
never pass silently.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import typing

T = typing.TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 0.05
# Polls start fast and back off to this, so a long wait does not spin.
MAX_INTERVAL = 0.5

_NOTHING = object()


class AwaitableInSyncWait(TypeError):
    """``wait_until`` was handed a check that returns an awaitable: it would never be awaited."""


class _Attempts:
    """The bookkeeping both twins share: deadline, pause, and the failure report."""

    def __init__(self, timeout: float, interval: float, message: str) -> None:
        if timeout <= 0 or interval <= 0:
            raise ValueError(f"timeout and interval must be positive, got timeout={timeout!r} interval={interval!r}")
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.interval = interval
        self.message = message
        self.count = 0
        self.last_value: object = _NOTHING
        self.last_error: BaseException | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def pause(self) -> float:
        """How long to sleep before the next attempt (never past the deadline)."""
        self.count += 1
        step = min(self.interval * (1.5 ** min(self.count, 20)), max(self.interval, MAX_INTERVAL))
        return max(0.0, min(step, self.remaining()))

    def failure(self) -> AssertionError:
        seen = "it never returned" if self.last_value is _NOTHING else f"last value: {self.last_value!r}"
        if self.last_error is not None:
            seen += f"; last error: {type(self.last_error).__name__}: {self.last_error}"
        error = AssertionError(f"{self.message}: not true within {self.timeout:g} s after {self.count + 1} attempts ({seen})")
        error.__cause__ = self.last_error
        return error


async def eventually(
    check: typing.Callable[[], typing.Any],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: str = "condition",
) -> typing.Any:
    """Poll ``check`` until it returns a truthy value; return that value, or raise AssertionError at the deadline."""
    attempts = _Attempts(timeout, interval, message)
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                # A hanging attempt must not outlive the deadline either.
                value = await asyncio.wait_for(value, timeout=max(attempts.remaining(), 0.001))
            attempts.last_value, attempts.last_error = value, None
            if value:
                return value
        except (TimeoutError, Exception) as error:  # noqa: BLE001 - any failure means "not yet"
            attempts.last_error = error
        if attempts.remaining() <= 0:
            raise attempts.failure()
        await asyncio.sleep(attempts.pause())


def wait_until(
    check: typing.Callable[[], typing.Any],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: str = "condition",
) -> typing.Any:
    """Synchronous twin of :func:`eventually`; ``check`` must not return an awaitable."""
    attempts = _Attempts(timeout, interval, message)
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise AwaitableInSyncWait("wait_until got an awaitable from its check; use `await eventually(...)` instead")
            attempts.last_value, attempts.last_error = value, None
            if value:
                return value
        except AwaitableInSyncWait:
            raise
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            attempts.last_error = error
        if attempts.remaining() <= 0:
            raise attempts.failure()
        time.sleep(attempts.pause())
