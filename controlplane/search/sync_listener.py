"""The standalone sync worker's own HTTP listener: /healthz and /metrics.

In process, the sync consumer's lag and dead letters are on the API's
/metrics; run apart (``search.sync_in_process: false``,
``a4c-controlplane sync``) they would vanish without this. /healthz answers
200 while the sync loop runs and 503 once it has ended: it tells a dead loop,
not an unreachable Elasticsearch (that shows in the metrics). /metrics wants
the same bearer token as the API's (``http.metrics_token_file``).
"""

from __future__ import annotations

import asyncio
import logging
import typing

from aiohttp import web

from controlplane import metrics
from controlplane import settings as cp_settings

logger = logging.getLogger(__name__)


class ListenError(Exception):
    """The listener's address is taken or not ours; the message names the settings."""


async def start(settings: cp_settings.Settings, alive: typing.Callable[[], bool]) -> web.AppRunner:
    """Bind the listener; the caller cleans the returned runner up."""
    token_file = settings.http.metrics_token_file

    async def healthz(request: web.Request) -> web.Response:
        if alive():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "stopped", "detail": "the sync loop has ended"}, status=503)

    async def prometheus(request: web.Request) -> web.Response:
        refusal = metrics.check_token(request.headers.get("Authorization", ""), token_file)
        if refusal is not None:
            status, detail = refusal
            return web.json_response({"detail": detail}, status=status)
        body, content_type = metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    search = settings.search
    site = web.TCPSite(runner, search.sync_metrics_host, search.sync_metrics_port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(
            f"search.sync_metrics_host/sync_metrics_port: cannot listen on {search.sync_metrics_host}:{search.sync_metrics_port}: {exc.strerror}"
        ) from None
    for address in runner.addresses:
        logger.info("sync worker metrics on http://%s:%s/metrics", *address[:2])
    return runner


async def watchdog(period: float, alive: typing.Callable[[], bool], stopping: asyncio.Event, ping: typing.Callable[[], object]) -> None:
    """Ping systemd's watchdog while the sync loop runs; a dead loop or a stuck event loop stops the pings."""
    while not stopping.is_set() and alive():
        ping()
        try:
            await asyncio.wait_for(stopping.wait(), period)
        except TimeoutError:
            pass
