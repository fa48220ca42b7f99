"""The middleware chain, outermost first: request id → metrics → errors → guard (size, auth, rate limit).

All four are one middleware (:func:`api_middleware`): as four, each cost a coroutine and aiohttp's
wrapper per request, a measurable share of a hot read's CPU (docs/benchmarks.md, ``api_read``).

* ``request`` (controlplane/api/requestlog.py) gives the request its id, binds
  it to every log line of the request, echoes it, and writes the access line.

* ``metrics`` times every request and counts it by route template and status.
* ``errors`` is the one place exceptions become HTTP answers: domain errors
  map by class (:data:`controlplane.errors.STATUS`), aiohttp's own (unknown
  route, wrong method, body too large) keep their status, an unreachable
  database is a 503, and anything else is logged and answered as a bare 500 —
  never a traceback. Every answer is ``{"error": {"code", "message", "fields"}}``.
* ``guard`` refuses oversized bodies up front, resolves the bearer token
  (a token this instance does not remember costs a lookup, limited per client
  address: 429 before the database is asked, see :mod:`.auth`), applies the
  token bucket (per token, or per address when anonymous), refuses
  unauthenticated calls to protected endpoints, and holds a slot of the
  route's class for the handler (503 with Retry-After when full, see
  :mod:`.shedding`); a blocking read holds none while it waits, the watch
  limits bound it instead (:mod:`.watches`).

A request whose client disconnects is cancelled (``handler_cancellation``,
controlplane/api/listener.py): it is counted with status 499, and a write's
transaction rolls back unless it had committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing

import asyncpg
import sqlalchemy as sa
from aiohttp import web

from controlplane import errors, metrics
from controlplane.api import auth, keys, requestlog, shedding

logger = logging.getLogger(__name__)

Handler = typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]]

_AIOHTTP_CODES = {400: "malformed", 404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}


def endpoint_of(request: web.Request) -> typing.Any:
    match = request.match_info
    if match.http_exception is not None:
        return None
    return getattr(match.handler, "endpoint", None)


def route_label(request: web.Request) -> str:
    match = request.match_info
    if match.http_exception is not None or match.route.resource is None:
        return "unmatched"
    endpoint = getattr(match.handler, "endpoint", None)
    return endpoint.path if endpoint is not None else match.route.resource.canonical


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """request id → metrics → errors → guard, in that order, as one middleware."""
    scope = requestlog.begin(request)
    started = time.perf_counter_ns()
    status = 500
    try:
        try:
            response = await _guard(request, handler)
        except Exception as exc:  # noqa: BLE001 - every error becomes an answer; CancelledError is not an Exception: it passes, counted as 499 below
            response = _error_answer(request, exc)
        status = response.status
        if not response.prepared:  # a stream prepared by its handler echoed the id itself
            requestlog.echo(request, response.headers)
        return response
    except asyncio.CancelledError:
        status = 499  # the client went away (nginx's "client closed request")
        raise
    except web.HTTPException as exc:  # a redirect, re-raised by _error_answer for aiohttp to send
        status = exc.status
        requestlog.echo(request, exc.headers)
        raise
    finally:
        elapsed = time.perf_counter_ns() - started
        metrics.observe(request.method, route_label(request), status, elapsed / 1e9)
        requestlog.end(request, status, elapsed, scope)


def error_response(
    status: int, code: str, message: str, fields: typing.Sequence[errors.FieldError] = (), headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message, "fields": [{"path": f.path, "reason": f.reason} for f in fields]}}
    return web.json_response(body, status=status, headers=headers)


def _error_answer(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The one place an exception becomes an HTTP answer; called in the ``except`` block that caught it."""
    if isinstance(exc, errors.DomainError):
        headers: dict[str, str] = {}
        if isinstance(exc, (errors.RateLimited, errors.Overloaded)):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, errors.Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="a4c"'
        return error_response(errors.status_of(exc), exc.code, exc.message, exc.fields, headers)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        message = exc.reason
        if exc.status == 413:
            message = f"the request body is larger than {request.app[keys.SETTINGS].http.max_body_bytes} bytes"
        return error_response(exc.status, _AIOHTTP_CODES.get(exc.status, "http_error"), message, headers=headers)
    if isinstance(exc, _UNAVAILABLE):
        logger.warning("database unavailable answering %s %s: %s", request.method, request.path, exc)
        return error_response(503, "unavailable", "the database is unavailable; retry later", headers={"Retry-After": "1"})
    logger.error("unhandled error answering %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal", "internal error; it has been logged")


# sa.exc.TimeoutError: no pooled connection came free within database.pool_timeout (bench overload found
# these answered 500); the database is as good as unavailable to this request.
_UNAVAILABLE = (
    TimeoutError,
    sa.exc.TimeoutError,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.InterfaceError,
    OSError,
)


async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    settings = app[keys.SETTINGS]
    limit = settings.http.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise errors.TooLarge(f"the request body is larger than {limit} bytes")
    endpoint = endpoint_of(request)
    public = endpoint is None or endpoint.auth == "public"
    token = auth.bearer(request) if not public else None
    address = auth.client_address(request, settings.rate_limit)
    principal = await app[keys.AUTH].principal(token, address=address) if token is not None else None
    request[keys.PRINCIPAL] = principal
    if endpoint is None or endpoint.rate_limited:
        token_key = (principal.token_id or principal.user_id) if principal is not None else None
        wait = app[keys.LIMITER].check(token_key=token_key, address=address)
        if wait:
            raise errors.RateLimited(f"too many requests; retry in {wait}s", retry_after=wait)
    if not public and principal is None:
        if token is None:
            raise errors.Unauthorized("this needs an API token: send 'Authorization: Bearer <token>'")
        raise errors.Unauthorized("unknown, revoked or expired token")
    caps = app[keys.CAPS]
    if endpoint is not None and endpoint.watchable and "index" in request.query:
        # A blocking read holds no slot of its class while it waits: the watch limits bound it (controlplane/api/watches.py).
        return await handler(request)
    cls = caps.enter(endpoint.route_class if endpoint is not None else shedding.route_class(None))
    try:
        return await handler(request)
    finally:
        caps.leave(cls)


MIDDLEWARES = (api_middleware,)
