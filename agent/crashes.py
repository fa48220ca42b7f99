"""A workspace that does not stay up: the settle check after a start, crash loops, and failing it.

``running`` is reported only for a container that stayed up for
``docker.settle_period`` after its start (same run: no exit, no restart).
A container that did not, or that exits ``docker.crash_loop_exits`` times
within ``docker.crash_loop_window`` later on, is stopped (so Docker stops
restarting it; the container stays for inspection) and reported ``failed``
with its exit code, restart count and last log lines
(agent/domain/main_process.py words it).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import typing

from agent import context as context_mod
from agent import docker_client
from agent.domain import main_process
from shared import messages

log = logging.getLogger(__name__)


class Failed(Exception):
    """The workspace did not stay up; ``state`` is the ``failed`` report already sent."""

    def __init__(self, state: messages.WorkspaceState) -> None:
        super().__init__(state.reason)
        self.state = state


async def settle(ctx: context_mod.Context, workspace_id: str, name: str, started: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """The container's inspect after the settle period, if the run seen in ``started`` is still up; else :class:`Failed`."""
    before = main_process.Run.of(started)
    period = ctx.settings.docker.settle_period
    if period > 0:
        await asyncio.sleep(period)
    info = await ctx.docker.inspect_container(name)
    after = main_process.Run.of(info)
    if main_process.stayed_up(before, after):
        return info
    what = f"the container did not stay up for {period:g} s after its start"
    state = await fail(ctx, workspace_id, name, info, what, restarts=after.restart_count)
    raise Failed(state)


async def fail(
    ctx: context_mod.Context, workspace_id: str, name: str, info: dict[str, typing.Any], what: str, *, restarts: int
) -> messages.WorkspaceState:
    """Stop a workspace that does not stay up and report it ``failed`` (call inside ``ctx.expectations.expect``)."""
    # Marked like a stop on command: cleanup keeps the container, its logs stay readable.
    ctx.marks.mark_stopped(workspace_id, True)
    try:
        await ctx.docker.stop(name, ctx.settings.docker.stop_timeout)
        info = await ctx.docker.inspect_container(name)
    except docker_client.NotFound:
        pass
    try:
        logs = await ctx.docker.logs(name, tail=main_process.LOG_TAIL_LINES)
    except docker_client.NotFound:
        logs = ""
    run = main_process.Run.of(info)
    state = messages.WorkspaceState(
        workspace_id=workspace_id,
        state="failed",
        container_id=info.get("Id"),
        exit_code=run.exit_code,
        restart_count=restarts,
        reason=main_process.failure_reason(what, run, restarts, logs),
    )
    log.warning("workspace failed", extra={"workspace_id": workspace_id, "exit_code": run.exit_code, "restarts": restarts})
    ctx.publisher.emit(messages.EventKind.WORKSPACE_STATE, state)
    return state


class CrashLoops:
    """Exits per workspace within the window; says when one is a crash loop."""

    def __init__(self, clock: typing.Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._exits: dict[str, collections.deque[float]] = {}

    def exited(self, workspace_id: str, *, limit: int, window: float) -> int | None:
        """Record an exit; the number of exits within ``window`` when it reaches ``limit`` (a crash loop), else None."""
        now = self.clock()
        exits = self._exits.setdefault(workspace_id, collections.deque())
        exits.append(now)
        while exits and exits[0] < now - window:
            exits.popleft()
        if len(exits) >= limit:
            del self._exits[workspace_id]
            return len(exits)
        return None

    def forget(self, workspace_id: str) -> None:
        self._exits.pop(workspace_id, None)
