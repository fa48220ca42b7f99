"""The event loop both servers run on: the comparison stays same-loop, same run (issue 18)."""

from __future__ import annotations

import asyncio
import typing

CHOICES = ("asyncio", "uvloop")


def run(main: typing.Coroutine[typing.Any, typing.Any, None], loop: str) -> None:
    """Run ``main`` on the named loop; uvloop is imported only when asked for."""
    factory: typing.Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)
