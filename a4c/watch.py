"""Watching jobs and workspaces from the CLI: blocking reads, and polling only while the API does not answer.

One daemon thread per watched object asks ``GET <path>?index=N&wait=30s``
in a loop (controlplane/api/watches.py answers as soon as the object
changes) and hands every new version to the caller through a queue, so a
command waiting for a job and its workspace hears of either at once. When
the API cannot be reached (an instance restarting, a balancer between
instances) the thread says so once and asks again every :data:`RETRY`
seconds — the same read, so it resumes blocking the moment the API answers,
and a change made meanwhile comes back at once. An API without blocking
reads (422 naming ``index``) is polled every :data:`RETRY` seconds instead.
Threads are daemons: a command that has what it waited for exits without
waiting for their reads.
"""

from __future__ import annotations

import queue
import threading
import time
import typing

from a4c import client, errors

WAIT = 30.0  # seconds one blocking read may wait; the API cuts it to its watch.max_wait
RETRY = 0.5  # seconds between reads while the API does not answer, or answers unchanged early

Note = typing.Callable[[str], None]
Doc = dict[str, typing.Any]

# What the threads put on the queue: ("doc", path, doc or None when gone), ("note", path, text), ("error", path, exc).
_Item = tuple[str, str, typing.Any]


class Watch:
    """New versions of the objects at ``paths`` (API paths such as ``/v1/jobs/<id>``), each first as it is now."""

    def __init__(self, api: client.Client, paths: typing.Iterable[str], note: Note, *, wait: float = WAIT, retry: float = RETRY) -> None:
        self._api, self._note, self._wait, self._retry = api, note, wait, retry
        self._paths = list(dict.fromkeys(paths))
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._stop = threading.Event()

    def __enter__(self) -> Watch:
        for path in self._paths:
            threading.Thread(target=self._follow, args=(path,), name=f"a4c-watch {path}", daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()

    def next(self, timeout: float) -> tuple[str, Doc | None] | None:
        """The next (path, document) — None as the document when the object is gone (404) — or None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                kind, path, value = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if kind == "note":
                self._note(value)
            elif kind == "error":
                raise value
            else:
                return path, value

    def _follow(self, path: str) -> None:
        index, blocking, lost = 0, True, False
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                if blocking:
                    doc, now = self._api.watch(path, index, self._wait)
                else:
                    doc = self._api.get(path)
                    now = int(doc.get("version") or 0)
            except errors.Unreachable as exc:
                if not lost:
                    self._queue.put(("note", path, f"{exc}; polling every {self._retry:g} s until it answers"))
                    lost = True
                self._stop.wait(self._retry)
                continue
            except errors.ApiError as exc:
                if exc.status == 404:
                    self._queue.put(("doc", path, None))
                    return
                if exc.status == 422 and blocking and any(field == "index" for field, _ in exc.fields):
                    blocking = False  # an API from before blocking reads: poll it
                    continue
                if exc.status in (429, 503) or exc.status >= 500:
                    # Over the watch limits, or an instance shutting down: ask again shortly.
                    self._stop.wait(self._retry)
                    continue
                self._queue.put(("error", path, exc))
                return
            if lost:
                self._queue.put(("note", path, f"the A4C API at {self._api.server} answers again; watching resumes"))
                lost = False
            changed = now != index
            if changed:
                index = now
                self._queue.put(("doc", path, doc))
            if not blocking or (not changed and time.monotonic() - began < self._retry):
                # Polling; or unchanged and early: the API cannot block just now (its change feed is down, or it drains).
                self._stop.wait(self._retry)
