"""Request ids and the access log: the outermost middleware (docs/operations/logging.md).

Every request runs inside a log scope (:func:`shared.logs.bind`) holding its request id:
the caller's ``X-Request-Id`` when well-formed (a CI system can pass its own
run id), else a fresh one. Every line logged while answering carries it, the
command outbox rows written for it carry it to the agent
(controlplane/commands.py), and the response echoes it in ``X-Request-Id``
(set by the middleware on every answer it returns, error answers included, and by a
handler that prepares its own stream before it does: :func:`echo`).

When the request is done one access line is logged with the ECS ``http``,
``url`` and ``event.duration`` fields, plus whatever the handler noted (a
job or workspace id, :func:`shared.logs.note`): at INFO for writes, at
WARNING for 5xx, at DEBUG for reads (the dashboard polls; the lines worth
keeping are the ones that change something).
"""

from __future__ import annotations

import contextvars
import logging
import typing

from aiohttp import web

from shared import logs

logger = logging.getLogger("controlplane.api.access")

REQUEST_ID = web.RequestKey("request_id", str)

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def begin(request: web.Request) -> contextvars.Token[dict[str, typing.Any] | None]:
    """The request's id, bound to the log lines written while it is answered; :func:`end` when it is done.

    Called by the outermost middleware (controlplane/api/middleware.py) rather than being one: a middleware of its
    own cost a coroutine and aiohttp's wrapper per request (docs/benchmarks.md, ``api_read``)."""
    request_id = logs.request_id_from(request.headers.get(logs.REQUEST_ID_HEADER))
    request[REQUEST_ID] = request_id
    return logs.bind(request_id=request_id)


def end(request: web.Request, status: int, duration_ns: int, token: contextvars.Token[dict[str, typing.Any] | None]) -> None:
    """The access line, still inside the request's log scope (it carries what the handler noted); then the scope ends."""
    try:
        _access(request, status, duration_ns)
    finally:
        logs.unbind(token)


def _access(request: web.Request, status: int, duration_ns: int) -> None:
    level = logging.WARNING if status >= 500 else logging.DEBUG if request.method in _READS else logging.INFO
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        "%s %s %d",
        request.method,
        request.path,
        status,
        extra={
            logs.ECS_EXTRA: {
                "http": {"request": {"method": request.method}, "response": {"status_code": status}},
                "url": {"path": request.path},
                "event": {"duration": duration_ns},
            }
        },
    )


def echo(request: web.Request, headers: typing.MutableMapping[str, str]) -> None:
    """The request id goes back to the caller in ``headers`` (a response's, before it is prepared).

    Not an ``on_response_prepare`` signal: dispatching one costs every request an awaited send
    (docs/benchmarks.md, ``api_read``)."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        headers[logs.REQUEST_ID_HEADER] = request_id
