"""Blocking reads: requests waiting for a job or a workspace to change, woken by this instance's change feed.

``GET /v1/jobs/{id}?index=N&wait=30s`` (and the same for a workspace)
answers at once when the object's index — its ``version`` — is past ``N``;
otherwise the request waits until the object changes or ``wait`` runs out,
and then answers the object as it is (the unchanged one, with the same
index, on a timeout). The decisions are in controlplane/domain/watch.py.

A waiting request costs one small :class:`_Waiter` and one future in a dict
keyed by the object: no task of its own, no timer but its deadline's, and no
polling. The requests of one caller that one change wakes share one read of
the row (a task per change, not per request). The future is armed before the request reads the row, so a change
committed after that read still wakes it. The feed
(controlplane/api/changes.py, on the instance's one LISTEN connection,
controlplane/db/listen.py, fed by migration 0013's trigger) resolves the
futures of the object that changed, whichever instance made the change.

Bounds: ``watch.per_instance`` waiting reads (one more is 503) and
``watch.per_user`` per user (one more is 429), both with Retry-After; every
wait is cut to ``watch.max_wait``. While the feed's connection is down this
instance hears no changes: the requests waiting then answer at once, and new
ones block at most ``watch.fallback_wait``, so clients see changes within
that while the feed reconnects. On shutdown every waiting read answers.
"""

from __future__ import annotations

import asyncio
import functools
import typing
import uuid

import prometheus_client

from controlplane import errors
from controlplane import settings as cp_settings
from controlplane.domain import watch as domain_watch

WATCHING = prometheus_client.Gauge("a4c_watch_waiting", "Blocking reads waiting for a change on this instance")
REFUSED = prometheus_client.Counter("a4c_watch_refused_total", "Blocking reads refused at a limit", ["limit"])
WOKEN = prometheus_client.Counter("a4c_watch_woken_total", "Blocking reads woken by a change notification")
REREADS = prometheus_client.Counter("a4c_watch_rereads_total", "Reads made for woken blocking reads (one per object, caller and change)")
FEED_UP = prometheus_client.Gauge("a4c_watch_feed_up", "1 while this instance LISTENs for changes (blocking reads wait as long as asked), else 0")

Row = typing.Any  # a record with a "version" (asyncpg.Record for the hot reads)
Key = tuple[str, uuid.UUID]


class _Waiter:
    __slots__ = ("future", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        # Resolved with the index of the change that woke it, 0 when the hub can no longer tell (feed lost, shutdown).
        self.future: asyncio.Future[int] | None = None


class Hub:
    """The waiting reads of one API instance, by object."""

    def __init__(self, settings: cp_settings.WatchSettings) -> None:
        self._settings = settings
        self._waiting: dict[Key, dict[_Waiter, None]] = {}
        self._by_user: dict[uuid.UUID, int] = {}
        # Reads shared by the requests one change woke, by (kind, id, caller, the change's index).
        self._rereads: dict[tuple[str, uuid.UUID, uuid.UUID, int], asyncio.Task[Row | None]] = {}
        self.count = 0
        self.live = False  # True while the feed's LISTEN is in place
        self.closed = False

    # The feed's side.

    def notify(self, change: domain_watch.Change) -> None:
        waiters = self._waiting.get((change.kind, change.id))
        if not waiters:
            return
        for waiter in waiters:
            future = waiter.future
            if future is not None and waiter.index < change.index and not future.done():
                future.set_result(change.index)
                WOKEN.inc()

    def resume(self) -> None:
        """The feed listens (again): waits may be as long as asked."""
        self.live = True
        FEED_UP.set(1)

    def lost(self) -> None:
        """The feed's connection is gone: changes may go unheard, so every waiting read answers now."""
        self.live = False
        FEED_UP.set(0)
        self._wake_all()

    def close(self) -> None:
        """Shutting down: every waiting read answers now, and new ones do not wait."""
        self.closed = True
        self._wake_all()

    def _wake_all(self) -> None:
        for waiters in self._waiting.values():
            for waiter in waiters:
                if waiter.future is not None and not waiter.future.done():
                    waiter.future.set_result(0)

    # The request's side.

    async def read(
        self,
        kind: str,
        ident: uuid.UUID,
        owner: uuid.UUID,
        index: int | None,
        wait: float | None,
        read: typing.Callable[[], typing.Awaitable[Row | None]],
    ) -> Row | None:
        """``read()``'s row once its version is past ``index`` or the wait is over; a plain read when ``index`` is None."""
        if index is None or self.closed:
            return await read()
        s = self._settings
        seconds = domain_watch.blocking_time(wait, default=s.default_wait, longest=s.max_wait, live=self.live, fallback=s.fallback_wait)
        if seconds <= 0:
            return await read()
        self._admit(owner)
        key = (kind, ident)
        waiter = _Waiter(index)
        waiters = self._waiting.setdefault(key, {})
        waiters[waiter] = None
        WATCHING.inc()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            changed = 0
            while True:
                waiter.future = future = loop.create_future()  # armed before the read
                row = await (read() if not changed else self._reread((kind, ident, owner, changed), read))
                if domain_watch.answers_now(None if row is None else row["version"], index):
                    return row
                try:
                    async with asyncio.timeout_at(deadline):
                        changed = await future
                except TimeoutError:
                    return row
                if not changed:
                    return row
        finally:
            # The dict stays in place while it holds this waiter; it goes when its last waiter does.
            del waiters[waiter]
            if not waiters:
                del self._waiting[key]
            WATCHING.dec()
            self._release(owner)

    async def _reread(self, token: tuple[str, uuid.UUID, uuid.UUID, int], read: typing.Callable[[], typing.Awaitable[Row | None]]) -> Row | None:
        """One read for every request of one caller that one change woke: a thousand watchers of a job cost one read.

        Keyed by the change's index, so a read started before a later change is never taken for it (it began after
        the NOTIFY that woke its requests, hence after that change's commit). Shielded: a request that goes away
        does not cancel the read the others wait for.
        """
        task = self._rereads.get(token)
        if task is None:
            REREADS.inc()
            task = asyncio.ensure_future(read())
            self._rereads[token] = task
            task.add_done_callback(functools.partial(self._reread_done, token))
        return await asyncio.shield(task)

    def _reread_done(self, token: tuple[str, uuid.UUID, uuid.UUID, int], task: asyncio.Task[Row | None]) -> None:
        if self._rereads.get(token) is task:
            del self._rereads[token]
        if not task.cancelled():
            task.exception()  # retrieved: each request still awaiting it gets it; nobody left is no "never retrieved"

    def _admit(self, owner: uuid.UUID) -> None:
        s = self._settings
        if self.count >= s.per_instance:
            REFUSED.labels("per_instance").inc()
            raise errors.Overloaded(
                f"this server holds as many blocking reads as it may ({s.per_instance}); retry in {s.retry_after}s", retry_after=s.retry_after
            )
        held = self._by_user.get(owner, 0)
        if held >= s.per_user:
            REFUSED.labels("per_user").inc()
            raise errors.RateLimited(
                f"you have as many blocking reads open on this server as you may ({s.per_user}); retry in {s.retry_after}s", retry_after=s.retry_after
            )
        self.count += 1
        self._by_user[owner] = held + 1

    def _release(self, owner: uuid.UUID) -> None:
        self.count -= 1
        held = self._by_user.pop(owner, 1) - 1
        if held:
            self._by_user[owner] = held
