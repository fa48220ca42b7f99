"""eventually / wait_until poll until a check passes, and fail with what they saw when it never does."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.harness import wait


async def test_eventually_returns_the_first_truthy_value_of_a_coroutine_check():
    calls = []

    async def check():
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert await wait.eventually(check, timeout=5, interval=0.01) == 3


async def test_eventually_treats_an_exception_as_not_yet():
    calls = []

    def check():
        calls.append(1)
        assert len(calls) > 2, "still warming up"
        return "ready"

    assert await wait.eventually(check, timeout=5, interval=0.01) == "ready"


async def test_eventually_reports_the_message_and_the_last_error_at_the_deadline():
    def check():
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(AssertionError, match=r"the server answers: not true within 0.2 s .*ConnectionRefusedError: nobody home") as failure:
        await wait.eventually(check, timeout=0.2, interval=0.01, message="the server answers")
    assert isinstance(failure.value.__cause__, ConnectionRefusedError)


async def test_eventually_does_not_let_a_hanging_check_outlive_the_deadline():
    async def hang():
        await asyncio.sleep(60)

    began = time.monotonic()
    with pytest.raises(AssertionError, match="hangs"):
        await wait.eventually(hang, timeout=0.3, message="hangs")
    assert time.monotonic() - began < 5


def test_wait_until_reports_the_last_value_when_it_stays_falsy():
    ready: list[str] = []

    with pytest.raises(AssertionError, match=r"messages arrive: not true within 0.1 s .*last value: \[\]"):
        wait.wait_until(lambda: list(ready), timeout=0.1, interval=0.01, message="messages arrive")


def test_wait_until_returns_once_the_check_passes():
    deadline = time.monotonic() + 0.1

    assert wait.wait_until(lambda: time.monotonic() > deadline, timeout=5, interval=0.01) is True


def test_wait_until_refuses_an_async_check():
    async def check():
        return True

    with pytest.raises(TypeError, match="await eventually"):
        wait.wait_until(check, timeout=1)
