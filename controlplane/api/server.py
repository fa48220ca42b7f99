"""Serving the API as a daemon: bind, tell systemd, stop gracefully on SIGTERM.

``a4c-controlplane run`` calls :func:`serve`. The listener's limits (header
and body deadlines, connection caps, cancellation on disconnect) are in
controlplane/api/listener.py. Under systemd (``NOTIFY_SOCKET``) it sends READY
once listening, WATCHDOG pings while the event loop is responsive, and
STOPPING on the way out.

SIGTERM drains in three steps, so that a rolling restart behind a load
balancer fails no request: ``/readyz`` answers 503 at once while the listener
still accepts, for ``http.drain_delay`` (the balancer's health check routes
new requests elsewhere meanwhile); then the listener closes (idle keep-alive
connections with it); then in-flight requests get ``http.shutdown_timeout``
to finish. Resources (cleanup contexts) stop last, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import typing

from aiohttp import web

from controlplane import settings as cp_settings
from controlplane.api import app as api_app
from controlplane.api import keys, listener
from shared import eventloop, sdnotify

logger = logging.getLogger(__name__)


async def serve(
    settings: cp_settings.Settings,
    *,
    contexts: typing.Sequence[api_app.Context] = api_app.DEFAULT_CONTEXTS,
    stopping: asyncio.Event | None = None,
    on_listening: typing.Callable[[str], None] | None = None,
) -> None:
    stopping = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stopping.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    app = api_app.init_app(settings, contexts=contexts)
    runner = listener.runner(app, settings.http, handle_signals=False)
    await runner.setup()
    watchdog: asyncio.Task[None] | None = None
    try:
        await listener.start(runner, settings.http)
        url = _url(runner, settings)
        loop_name = eventloop.running()
        logger.info("control plane API listening on %s (event loop: %s)", url, loop_name)
        if on_listening is not None:
            on_listening(url)
        sdnotify.notify("READY=1", f"STATUS=serving on {url} (event loop: {loop_name})")
        period = sdnotify.watchdog_period()
        if period is not None:
            watchdog = asyncio.create_task(_watchdog(period, stopping))
        await stopping.wait()
        sdnotify.notify("STOPPING=1")
        app[keys.DRAINING].set()
        app[keys.WATCHES].close()  # blocked reads answer now; their clients ask again, through the balancer, elsewhere
        if settings.http.drain_delay > 0:
            logger.info("draining: /readyz answers 503, the listener closes in %ss", settings.http.drain_delay)
            await asyncio.sleep(settings.http.drain_delay)
        logger.info("stopping: listener closed, finishing in-flight requests (up to %ss)", settings.http.shutdown_timeout)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass


async def _watchdog(period: float, stopping: asyncio.Event) -> None:
    # A ping only goes out if the loop is responsive enough to run this task.
    while not stopping.is_set():
        sdnotify.notify("WATCHDOG=1", wait=0)
        try:
            await asyncio.wait_for(stopping.wait(), period)
        except TimeoutError:
            pass


def _url(runner: web.AppRunner, settings: cp_settings.Settings) -> str:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return f"http://{settings.http.host}:{address[1]}"
    return f"http://{settings.http.host}:{settings.http.port}"
