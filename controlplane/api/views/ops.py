"""/healthz, /readyz, /metrics and /v1/openapi.json: unauthenticated, for load balancers, Prometheus and clients."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web

from controlplane import errors, metrics
from controlplane.api import endpoint, keys
from controlplane.api.schemas import ops as schemas
from controlplane.db import schema
from shared import consuming

routes = endpoint.Routes("operations")

READY_TIMEOUT = 2.0  # seconds; a load balancer's probe must not hang on a stuck database


@routes.get("/healthz", response=schemas.Health, auth="public", rate_limited=False)
async def healthz(call: endpoint.Call) -> schemas.Health:
    """The process is up (no dependency is checked)."""
    return schemas.Health(status="ok")


@routes.get("/readyz", response=schemas.Ready, auth="public", rate_limited=False)
async def readyz(call: endpoint.Call) -> schemas.Ready:
    """Ready to serve: not shutting down, the database answers and no Kafka consumer is stalled (503 naming what is not)."""
    if call.request.app[keys.DRAINING].is_set():
        raise errors.Unavailable("draining: this instance is shutting down")
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await call.session.execute(sa.text("SELECT 1"))
    except (sa.exc.DBAPIError, OSError, TimeoutError) as exc:
        raise errors.Unavailable(f"database unreachable: {type(exc).__name__}") from exc
    stalled = _stalled(call.request.app.get(keys.CONSUMERS) or {}, call.settings.consumers.stall_after)
    if stalled:
        raise errors.Unavailable("; ".join(stalled))
    return schemas.Ready(status="ready", database="ok")


def _stalled(consumers: dict[str, consuming.Progress], after: float) -> list[str]:
    """A consumer is stalled when records wait and it has not committed past any for ``after`` seconds."""
    found = []
    for name, progress in sorted(consumers.items()):
        seconds = progress.stalled_for()
        if seconds > after:
            found.append(f"consumer {name} stalled: {progress.waiting} records waiting, nothing committed for {seconds:.0f} s")
    return found


@routes.get("/v1/version", response=schemas.Version, auth="public", rate_limited=False)
async def version(call: endpoint.Call) -> schemas.Version:
    """This instance's release and the database schema it was written for (a rollout's version-skew check reads it)."""
    package = schema.known()
    return schemas.Version(version=schema.package_version(), schema_revision=package.names[package.head])


@routes.get("/metrics", response=None, auth="public", raw=True, rate_limited=False)
async def prometheus(call: endpoint.Call) -> web.Response:
    """Prometheus metrics: requests by route and status, latency histograms, hosts/jobs/workspaces gauges.

    With ``http.metrics_token_file`` set, only a scraper presenting that token gets them (401 otherwise).
    """
    _check_metrics_token(call)
    await metrics.refresh_domain(call.session)
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def _check_metrics_token(call: endpoint.Call) -> None:
    refusal = metrics.check_token(call.request.headers.get("Authorization", ""), call.settings.http.metrics_token_file)
    if refusal is None:
        return
    status, detail = refusal
    raise (errors.Unavailable if status == 503 else errors.Unauthorized)(detail)


@routes.get("/v1/openapi.json", response=None, auth="public", raw=True)
async def openapi(call: endpoint.Call) -> web.Response:
    """This document: every route, body and error of the API."""
    return web.json_response(call.request.app[keys.OPENAPI])
