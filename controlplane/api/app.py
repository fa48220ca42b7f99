"""The aiohttp application factory (after aiohttp-demos' polls): ``init_app(settings) -> web.Application``.

Resources start in ``cleanup_ctx`` order and stop in reverse: one context per
resource, each a small async generator. :data:`DEFAULT_CONTEXTS` are the
database pools, housekeeping of idempotency records, and the search backends
(``controlplane/search/context.py``); ``a4c-controlplane run`` adds the
background loops (``controlplane/workers.py``: relay, consumers, reconciler,
scheduler, search sync) by passing ``contexts=(*DEFAULT_CONTEXTS, workers_ctx)``.
A context reads what it needs from ``app[keys.…]`` and stores what it makes
under its own typed key.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import typing

from aiohttp import web
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.api import auth, changes, endpoint, idempotency, keys, middleware, openapi, ratelimit, revocations, shedding, watches
from controlplane.api.schemas import images as image_schemas
from controlplane.api.schemas import search as search_schemas
from controlplane.api.views import ci, enrolment, hosts, images, jobs, ops, search, streams, users, workspaces
from controlplane.db import engine as db_engine
from controlplane.db import hot as db_hot
from controlplane.db import listen as db_listen
from controlplane.search import context as search_context
from controlplane.web import routes as web_routes

logger = logging.getLogger(__name__)

Context = typing.Callable[[web.Application], typing.AsyncIterator[None]]

VIEWS = (ops, workspaces, streams, images, jobs, search, hosts, users, enrolment, ci)
HOUSEKEEPING_PERIOD = 600.0  # seconds between purges of expired idempotency records


def endpoints() -> list[endpoint.Endpoint]:
    return [ep for module in VIEWS for ep in module.routes.endpoints]


async def database_ctx(app: web.Application) -> typing.AsyncIterator[None]:
    """Two pools: transactions for writes, autocommit for reads.

    A GET runs its one or two SELECTs in autocommit on connections that stay
    in autocommit mode, so it pays no BEGIN/ROLLBACK round trips and no
    isolation-level switching on checkout; and no pre-ping either: a read on
    a connection the database dropped is retried once on a fresh one (see
    endpoint.handler_for). Together that is about half the database cost of a
    read.

    The read pool keeps all its database.pool_size connections open and
    opens no overflow ones: SQLAlchemy closes an overflow connection as soon as
    it is returned, so under a burst of reads every request would pay for a
    new connection (a few milliseconds of CPU each). Reads beyond the pool
    wait for a connection instead.

    The hottest reads (one workspace, one job) skip SQLAlchemy: they run as
    prepared statements on an asyncpg pool of database.pool_size connections
    of their own (controlplane/db/hot.py), opened on first use and kept.
    """
    settings = app[keys.SETTINGS]
    engine = db_engine.create(settings.database)
    reads = db_engine.create(
        settings.database,
        isolation_level="AUTOCOMMIT",
        skip_autocommit_rollback=True,
        pool_pre_ping=False,
        pool_size=settings.database.pool_size,
        max_overflow=0,
    )
    hot_reads = db_hot.HotReads(settings.database, size=settings.database.pool_size)
    await hot_reads.start()
    app[keys.ENGINE] = engine
    app[keys.READ_ENGINE] = reads
    app[keys.HOT_READS] = hot_reads
    app[keys.SESSIONS] = db_engine.sessionmaker(engine)
    app[keys.READ_SESSIONS] = sa_asyncio.async_sessionmaker(reads, expire_on_commit=False)
    limits = settings.rate_limit
    app[keys.AUTH] = auth.Authenticator(
        app[keys.READ_SESSIONS],
        settings.auth.cache_ttl,
        size=settings.auth.cache_size,
        lookup_timeout=settings.auth.lookup_timeout,
        lookups=ratelimit.Limiter(limits.lookups_per_address_rps, limits.lookups_per_address_burst) if limits.enabled else None,
    )
    try:
        yield
    finally:
        await hot_reads.close()
        await reads.dispose()
        await engine.dispose()


async def housekeeping_ctx(app: web.Application) -> typing.AsyncIterator[None]:
    """Purge expired Idempotency-Key records now and then (any instance may; the DELETE is idempotent)."""

    async def loop() -> None:
        while True:
            try:
                async with app[keys.SESSIONS]() as session, session.begin():
                    await idempotency.purge(session, app[keys.SETTINGS].api.idempotency_retention)
            except Exception as exc:  # noqa: BLE001 - housekeeping must never take the API down
                logger.warning("idempotency purge failed: %s", exc)
            await asyncio.sleep(HOUSEKEEPING_PERIOD)

    task = asyncio.create_task(loop(), name="a4c-api-housekeeping")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def listen_ctx(app: web.Application) -> typing.AsyncIterator[None]:
    """One LISTEN connection (controlplane/db/listen.py) for token revocations (controlplane/api/revocations.py) and the
    change feed that wakes blocking reads (controlplane/api/changes.py, controlplane/api/watches.py)."""
    channels = [revocations.channel(app[keys.AUTH]), changes.channel(app[keys.WATCHES])]
    stopping = asyncio.Event()
    listening = asyncio.create_task(db_listen.listen(app[keys.SETTINGS].database, channels, stopping), name="a4c-listen")
    try:
        yield
    finally:
        stopping.set()
        listening.cancel()  # it may be waiting on a connect to a database that does not answer
        with contextlib.suppress(asyncio.CancelledError):
            await listening


async def _answer_blocked_reads(app: web.Application) -> None:
    # on_shutdown runs before the runner waits for in-flight requests: blocked reads answer now, not at shutdown_timeout.
    app[keys.WATCHES].close()


DEFAULT_CONTEXTS: tuple[Context, ...] = (database_ctx, listen_ctx, housekeeping_ctx, search_context.search_ctx)


def init_app(settings: cp_settings.Settings, *, contexts: typing.Sequence[Context] = DEFAULT_CONTEXTS) -> web.Application:
    app = web.Application(middlewares=middleware.MIDDLEWARES, client_max_size=settings.http.max_body_bytes)
    app[keys.SETTINGS] = settings
    limits = settings.rate_limit
    app[keys.LIMITER] = ratelimit.Limits(
        ratelimit.Limiter(limits.per_token_rps, limits.per_token_burst),
        ratelimit.Limiter(limits.anonymous_rps, limits.anonymous_burst),
        enabled=limits.enabled,
    )
    app[keys.CAPS] = shedding.Caps(settings.concurrency)
    app[keys.DRAINING] = asyncio.Event()
    app[keys.WATCHES] = watches.Hub(settings.watch)
    app.on_shutdown.append(_answer_blocked_reads)
    found = endpoints()
    for ep in found:
        app.router.add_route(ep.method, ep.aiohttp_path, endpoint.handler_for(ep), name=ep.name)
    app[keys.OPENAPI] = openapi.build(found, title="A4C control plane", version=_version())
    image_schemas.document_git_url(app[keys.OPENAPI], settings.api.git_url_schemes)
    search_schemas.document_syntax(app[keys.OPENAPI])
    web_routes.setup(app, mark=_dashboard_route)  # the dashboard: GET / and /ui/<version>/<file>
    app.cleanup_ctx.extend(contexts)
    return app


def _dashboard_route(handler: web_routes.Handler, path: str) -> web_routes.Handler:
    """``handler`` marked as a public, not rate-limited, undocumented route for the middleware."""
    handler.endpoint = endpoint.Endpoint(  # type: ignore[attr-defined]
        method="GET",
        path=path,
        # Metadata for the middleware only: the route calls the handler with the request, never a Call.
        handler=handler,  # type: ignore[arg-type]
        name=f"dashboard_{handler.__name__}",
        summary="The web dashboard",
        description="",
        tag="dashboard",
        status=200,
        response=None,
        body=None,
        query=None,
        auth="public",
        write=False,
        secret=False,
        errors=(404,),
        raw=True,
        rate_limited=False,
    )
    return handler


def _version() -> str:
    try:
        return importlib.metadata.version("a4c")
    except importlib.metadata.PackageNotFoundError:
        return "0"
