"""Concurrency caps per route class: when a class is full, one more request answers 503 with Retry-After.

Classes (settings ``concurrency.*``): ``search`` (GET /v1/jobs/search, the
costliest read), ``create`` (POSTs to a collection: workspaces, images,
builds, users, tokens…), ``streams`` (a workspace's exec and logs
WebSockets, which stay open for a session), and ``other``. The probes an orchestrator or a
scraper depends on (/healthz, /readyz, /metrics) are never capped, so an
overloaded instance still says so instead of timing out. There is no queue:
a request over the cap is refused at once (it costs nothing), which keeps
latency bounded for the requests that are admitted. Caps are per instance.
"""

from __future__ import annotations

import contextlib
import typing

import prometheus_client

from controlplane import errors
from controlplane import settings as cp_settings

if typing.TYPE_CHECKING:
    from controlplane.api import endpoint as endpoint_mod

CLASSES = ("search", "create", "streams", "other")
UNCAPPED = frozenset({"/healthz", "/readyz", "/metrics"})

IN_FLIGHT = prometheus_client.Gauge("a4c_http_in_flight", "Requests being answered, by route class", ["route_class"])
SHED = prometheus_client.Counter("a4c_http_shed_total", "Requests refused with 503 because their route class was full", ["route_class"])


def route_class(ep: endpoint_mod.Endpoint | None) -> str | None:
    """The class whose cap applies to ``ep``; None for the uncapped probes. Unknown routes (404s, the dashboard) are ``other``."""
    if ep is None:
        return "other"
    if ep.path in UNCAPPED:
        return None
    if ep.method == "GET" and ep.path.endswith("/search"):
        return "search"
    if ep.method == "GET" and ep.path.rsplit("/", 1)[-1] in ("exec", "logs"):
        return "streams"
    # A collection: the last segment is a name, not an {id} and not an action on one.
    if ep.method == "POST" and ep.path.rsplit("/", 1)[-1] in _COLLECTIONS:
        return "create"
    return "other"


_COLLECTIONS = frozenset({"workspaces", "images", "builds", "schedules", "users", "tokens", "enrolment-tokens", "ci-systems", "enrol"})


class Caps:
    def __init__(self, settings: cp_settings.ConcurrencySettings) -> None:
        self._limits = {"search": settings.search, "create": settings.create, "streams": settings.streams, "other": settings.other}
        self._busy = dict.fromkeys(CLASSES, 0)
        self._gauges = {cls: IN_FLIGHT.labels(cls) for cls in CLASSES}  # looked up once, not per request
        self.retry_after = settings.retry_after

    def busy(self, cls: str) -> int:
        return self._busy[cls]

    @contextlib.contextmanager
    def slot(self, cls: str | None) -> typing.Iterator[None]:
        """Hold one slot of ``cls`` for the block; Overloaded (503) if none is free."""
        self.enter(cls)
        try:
            yield
        finally:
            self.leave(cls)

    def enter(self, cls: str | None) -> str | None:
        """Take one slot of ``cls`` (None: uncapped); Overloaded (503) if none is free. Give it back with :meth:`leave`."""
        if cls is None:
            return None
        if self._busy[cls] >= self._limits[cls]:
            SHED.labels(cls).inc()
            raise errors.Overloaded(
                f"this server is answering as many {cls} requests as it may ({self._limits[cls]}); retry in {self.retry_after}s",
                retry_after=self.retry_after,
            )
        self._busy[cls] += 1
        self._gauges[cls].inc()
        return cls

    def leave(self, cls: str | None) -> None:
        if cls is not None:
            self._busy[cls] -= 1
            self._gauges[cls].dec()
