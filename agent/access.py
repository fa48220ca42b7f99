"""The agent's access listener: where the control plane opens exec and logs streams.

The listening socket is opened at start, so the port is known and advertised
in the first heartbeat; the HTTP and WebSocket machinery behind it
(agent/access_streams.py, aiohttp) is imported when the first connection
arrives. An agent that serves no stream does not carry aiohttp: about 12 MB,
a fifth of its idle memory (docs/benchmarks.md, ``agent``).
"""

from __future__ import annotations

import asyncio
import logging
import typing

from agent import context as context_mod

if typing.TYPE_CHECKING:
    from aiohttp import web, web_protocol

log = logging.getLogger(__name__)

# A stream still open when the agent stops gets this long to end before it is cut.
STREAM_GRACE = 5.0


class Server:
    def __init__(self, ctx: context_mod.Context) -> None:
        self.ctx = ctx
        self._listener: asyncio.Server | None = None
        self._http: web.Server | None = None
        self.url: str | None = None

    async def start(self) -> str:
        settings = self.ctx.settings.access
        self._listener = await asyncio.get_running_loop().create_server(self._protocol, settings.listen_host, settings.listen_port)
        port = self._listener.sockets[0].getsockname()[1]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.listen_host, settings.listen_host)
        self.url = settings.advertise_url or f"http://{host}:{port}"
        log.info("access listener up", extra={"url": self.url, "listen": f"{settings.listen_host}:{port}"})
        return self.url

    def _protocol(self) -> web_protocol.RequestHandler:
        """One connection's protocol; the first one builds the HTTP server (the import holds the loop ~0.1 s, once)."""
        if self._http is None:
            from agent import access_streams  # on first use: see the docstring

            self._http = access_streams.http_server(self.ctx)
        return self._http()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._http is not None:
            self._http.pre_shutdown()
            await self._http.shutdown(STREAM_GRACE)
