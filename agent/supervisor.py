"""Named root tasks under one supervisor (the shape of kopf's reactor).

Every long-running loop of the agent is a root task with a name. A root
task that crashes is logged with its traceback, counted
(``a4c_agent_task_restarts_total``) and restarted after a backoff that grows
while it keeps crashing and resets once it has run for a while; it is never
lost silently, and one broken loop never takes the others down. Shutdown
stops tasks in the order the caller gives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import typing

from agent import metrics
from agent.domain import backoff as backoff_mod

log = logging.getLogger(__name__)

# A task that ran this long before crashing is considered to have been healthy.
_HEALTHY_AFTER = 60.0


@dataclasses.dataclass
class _Root:
    name: str
    factory: typing.Callable[[], typing.Awaitable[None]]
    task: asyncio.Task | None = None
    restarts: int = 0


class Supervisor:
    def __init__(self, *, backoff_max: float = 30.0) -> None:
        self.backoff_max = backoff_max
        self._roots: dict[str, _Root] = {}
        # Once closing, a root task that returns is done, not restarted.
        self.closing = False

    def spawn(self, name: str, factory: typing.Callable[[], typing.Awaitable[None]]) -> None:
        if name in self._roots:
            raise ValueError(f"root task {name!r} already exists")
        root = _Root(name, factory)
        root.task = asyncio.create_task(self._guard(root), name=f"a4c:{name}")
        self._roots[name] = root

    def names(self) -> list[str]:
        return list(self._roots)

    def alive(self) -> bool:
        """Every root task is running (a crashed one counts as alive while it waits to restart)."""
        return all(r.task is not None and not r.task.done() for r in self._roots.values())

    async def join(self, name: str, timeout: float) -> bool:
        """Wait for a root task to end by itself (it was told to); True if it did."""
        root = self._roots.get(name)
        if root is None or root.task is None:
            return True
        done, _ = await asyncio.wait({root.task}, timeout=timeout)
        return bool(done)

    async def stop(self, name: str, timeout: float) -> None:
        root = self._roots.pop(name, None)
        if root is None or root.task is None:
            return
        root.task.cancel()
        done, _ = await asyncio.wait({root.task}, timeout=timeout)
        if not done:
            log.warning("root task did not stop in time", extra={"task": name, "timeout_s": timeout})

    async def stop_all(self, order: typing.Sequence[str], timeout: float) -> None:
        """Stop the named tasks in order, then any others, within ``timeout`` overall."""
        deadline = time.monotonic() + timeout
        for name in [*order, *[n for n in self._roots if n not in order]]:
            await self.stop(name, max(0.1, deadline - time.monotonic()))

    async def _guard(self, root: _Root) -> None:
        delays = backoff_mod.Backoff(initial=0.5, maximum=self.backoff_max)
        while True:
            began = time.monotonic()
            try:
                await root.factory()
                if self.closing:
                    return
                log.warning("root task returned; restarting it", extra={"task": root.name})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("root task crashed; restarting it", extra={"task": root.name})
            if time.monotonic() - began > _HEALTHY_AFTER:
                delays.reset()
            root.restarts += 1
            metrics.TASK_RESTARTS.labels(root.name).inc()
            await asyncio.sleep(delays.next())
