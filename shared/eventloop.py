"""Which event loop a daemon runs on: uvloop by default, asyncio's own on request.

uvloop (libuv under asyncio's API) takes 11–19 % of the control plane's CPU
off each API read and 4–13 % off accepting a create (docs/benchmarks.md,
"`api_read` and the accept step on uvloop"). asyncio's loop stays one
setting away for platforms without a uvloop wheel and for ruling the loop
out when chasing a bug.
"""

from __future__ import annotations

import asyncio
import typing

Name = typing.Literal["uvloop", "asyncio"]
CHOICES: tuple[Name, ...] = typing.get_args(Name)
T = typing.TypeVar("T")


class EventLoopUnavailable(RuntimeError):
    """The configured loop cannot be made here (uvloop not installed)."""


def factory(name: Name, *, setting: str = "event_loop") -> typing.Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``name`` (None: asyncio's default); ``setting`` names the knob in the error."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise EventLoopUnavailable(f"{setting} is 'uvloop' but uvloop is not installed ({exc}); install it, or set {setting} to 'asyncio'") from exc
    return uvloop.new_event_loop


def run(main: typing.Coroutine[typing.Any, typing.Any, T], name: Name, *, setting: str = "event_loop") -> T:
    """Run ``main`` to completion on the named loop, as ``asyncio.run`` does."""
    with asyncio.Runner(loop_factory=factory(name, setting=setting)) as runner:
        return runner.run(main)


def running() -> str:
    """The name of the running loop, for the start-up line: 'uvloop' or 'asyncio'."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
