"""Named, guarded root tasks with ordered shutdown (after kopf's reactor/running.py).

A daemon is a handful of long-running loops (HTTP server, relay, consumers,
reconciler…). Each runs as a named root task under one :class:`Supervisor`:

* a task that crashes is logged with its name and restarted with backoff,
  instead of dying silently while the process looks healthy;
* ``health()`` says which tasks are up, for /healthz and the sd_notify watchdog;
* shutdown stops the tasks one by one in the *reverse* order they were added
  (each has its own stop event, so consumers have finished before the producer
  they feed is asked to stop), cancelling any that outlive the deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import typing

from shared import aio
from shared.domain import backoff

logger = logging.getLogger(__name__)

Loop = typing.Callable[[asyncio.Event], typing.Awaitable[None]]


@dataclasses.dataclass
class _Root:
    name: str
    loop: Loop
    restart: bool
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    crashes: int = 0
    last_error: str = ""
    running: bool = False


class Supervisor:
    def __init__(self, *, max_backoff: float = 30.0) -> None:
        self.stopping = asyncio.Event()
        self._roots: list[_Root] = []
        self._max_backoff = max_backoff

    def add(self, name: str, loop: Loop, *, restart: bool = True) -> None:
        """Register ``loop(stopping)``; it should return once ``stopping`` is set."""
        self._roots.append(_Root(name, loop, restart))

    def start(self) -> None:
        for root in self._roots:
            root.task = asyncio.create_task(self._guard(root), name=root.name)

    def health(self) -> dict[str, dict[str, typing.Any]]:
        return {r.name: {"running": r.running, "crashes": r.crashes, "last_error": r.last_error} for r in self._roots}

    @property
    def healthy(self) -> bool:
        return all(r.running for r in self._roots) and not self.stopping.is_set()

    async def wait(self) -> None:
        """Until every root task has ended (after :meth:`shutdown`, or all returned)."""
        await asyncio.gather(*(r.task for r in self._roots if r.task), return_exceptions=True)

    async def shutdown(self, deadline: float) -> list[str]:
        """Stop everything in reverse order; returns names of tasks that had to be cancelled."""
        self.stopping.set()
        cancelled: list[str] = []
        end = time.monotonic() + deadline
        for root in reversed(self._roots):
            root.stop.set()
            if root.task is None or root.task.done():
                continue
            try:
                # Past the deadline, the rest still get a moment to notice their stop event.
                await asyncio.wait_for(asyncio.shield(root.task), max(0.1, end - time.monotonic()))
            except TimeoutError:
                cancelled.append(root.name)
                root.task.cancel()
                await asyncio.gather(root.task, return_exceptions=True)
            except Exception:  # noqa: BLE001, S110 - already logged by the guard
                pass
        if cancelled:
            logger.warning("cancelled after the shutdown deadline: %s", ", ".join(cancelled))
        return cancelled

    async def _guard(self, root: _Root) -> None:
        # A task that ran fine for a minute failed afresh: its restarts start short again.
        restarts = backoff.exponential(0.5, self._max_backoff, healthy_after=60.0)
        while not root.stop.is_set():
            root.running = True
            started = time.monotonic()
            try:
                await root.loop(root.stop)
                root.running = False
                if root.stop.is_set() or not root.restart:
                    return
                logger.warning("root task %s returned while not stopping; restarting", root.name)
            except asyncio.CancelledError:
                root.running = False
                raise
            except Exception as exc:  # the guard exists to catch everything
                root.running = False
                root.crashes += 1
                root.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("root task %s crashed (%d so far)", root.name, root.crashes)
                if not root.restart:
                    return
            if await aio.sleep_or(root.stop, restarts.next(healthy_for=time.monotonic() - started)):
                return
