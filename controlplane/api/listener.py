"""The HTTP listener: aiohttp's server with the limits a public port needs.

* **Header deadline.** aiohttp (3.10+) closes a connection whose handler is
  waiting for a request head once ``keepalive_timeout`` has passed since the
  connection opened or since its previous answer, however slowly bytes
  trickle in; ``http.header_timeout`` is that timeout, so idle keep-alive and
  slowloris-style heads are bounded alike.
* **Body deadline.** ``http.body_timeout``, applied where a handler reads the
  body (controlplane/api/endpoint.py, 408 naming body).
* **Connection caps.** :class:`Gate` counts open connections, in total and per
  client address (the TCP peer); one over either cap gets a bare 503 with
  ``Retry-After`` and is closed before aiohttp sees it.
* **Cancellation.** ``handler_cancellation``: a client that disconnects
  cancels its handler, so abandoned work stops; a write's transaction then
  rolls back unless it had committed (controlplane/api/endpoint.py).
* Request line and header sizes stay at aiohttp's 8 KiB defaults.

:func:`runner` and :func:`start` are used by ``a4c-controlplane run``
(controlplane/api/server.py) and by the tests, so both serve the same way.
"""

from __future__ import annotations

import asyncio
import typing

import prometheus_client
from aiohttp import web

from controlplane import settings as cp_settings

CONNECTIONS = prometheus_client.Gauge("a4c_http_connections", "Open HTTP connections")
REFUSED = prometheus_client.Counter("a4c_http_connections_refused_total", "Connections refused at a cap", ["cap"])

_REFUSAL_BODY = b'{"error":{"code":"overloaded","message":"too many open connections; retry later","fields":[]}}'
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


class Gate:
    """Open connections, in total and per address, against their caps (0 per address = none)."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.open = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        if self.open >= self.total:
            REFUSED.labels("total").inc()
            return False
        held = self._by_address.get(address, 0)
        if self.per_address and held >= self.per_address:
            REFUSED.labels("per_address").inc()
            return False
        self.open += 1
        self._by_address[address] = held + 1
        CONNECTIONS.inc()
        return True

    def release(self, address: str) -> None:
        self.open -= 1
        CONNECTIONS.dec()
        held = self._by_address.pop(address, 1) - 1
        if held:
            self._by_address[address] = held


class _Guarded(asyncio.Protocol):
    """Admits a connection through the gate, then hands every event to aiohttp's own protocol."""

    def __init__(self, factory: typing.Callable[[], asyncio.Protocol], gate: Gate) -> None:
        self._factory = factory
        self._gate = gate
        self._inner: asyncio.Protocol | None = None
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._gate.admit(address):
            typing.cast(asyncio.Transport, transport).write(REFUSAL)
            transport.close()
            return
        self._address = address
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._gate.release(self._address)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class Site(web.TCPSite):
    """A TCPSite whose connections pass through a :class:`Gate`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: Gate, **kw: typing.Any) -> None:
        super().__init__(runner, host, port, **kw)
        self.gate = gate

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        gate = self.gate
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guarded(server, gate),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def runner(app: web.Application, settings: cp_settings.HttpSettings, **kw: typing.Any) -> web.AppRunner:
    return web.AppRunner(
        app,
        handler_cancellation=True,
        keepalive_timeout=settings.header_timeout,
        access_log=None,
        shutdown_timeout=kw.pop("shutdown_timeout", settings.shutdown_timeout),
        **kw,
    )


async def start(runner_: web.AppRunner, settings: cp_settings.HttpSettings, *, host: str | None = None, port: int | None = None) -> Site:
    site = Site(
        runner_,
        settings.host if host is None else host,
        settings.port if port is None else port,
        Gate(settings.max_connections, settings.max_connections_per_address),
        reuse_address=True,
    )
    await site.start()
    return site
