"""Search inside the control-plane process: an aiohttp cleanup context.

``search_ctx`` makes the shared :class:`service.Backends` (Elasticsearch client,
circuit breaker, replica engines) and stores it under :data:`SEARCH` for the
``/v1/jobs/search`` view. It needs ``database_ctx`` before it: without
replicas, searches reuse the primary's engine. (The sync consumer is not
started here: ``controlplane.workers`` runs it as the ``search-sync`` task.)
"""

from __future__ import annotations

import typing

from aiohttp import web

from controlplane import appkeys
from controlplane.search import service

SEARCH = web.AppKey("search", service.Backends)


async def search_ctx(app: web.Application) -> typing.AsyncIterator[None]:
    backends = service.Backends.create(app[appkeys.SETTINGS], primary=app.get(appkeys.ENGINE))
    app[SEARCH] = backends
    try:
        yield
    finally:
        await backends.close()
