"""The media-type shim: lets the official Elasticsearch 8 client talk to osmem-server.

The ``elasticsearch`` 8.x client sends ``application/vnd.elasticsearch+json;
compatible-with=8`` (and ``+x-ndjson`` for bulk) in Content-Type and Accept;
osmem-server answers those with 406. This proxy rewrites the two request
headers to the plain media types and forwards everything else unchanged. It
is test-only: the product talks to a real Elasticsearch 8 with no workaround.

Run as a script (the harness starts it as a subprocess, so stopping it is a
real "connection refused"):

    python es_shim.py --listen 127.0.0.1:9201 --backend http://127.0.0.1:9200
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal

import aiohttp
import yarl
from aiohttp import web

_VENDOR_TYPE = re.compile(r"application/vnd\.elasticsearch\+([\w.-]+)(\s*;\s*compatible-with\s*=\s*\d+)?", re.IGNORECASE)
_REWRITTEN = ("Content-Type", "Accept")
# Connection-level headers are the proxy's own business on each hop.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


def plain_media_type(value: str) -> str:
    """``application/vnd.elasticsearch+json; compatible-with=8`` -> ``application/json`` (others unchanged)."""
    return _VENDOR_TYPE.sub(lambda m: f"application/{m.group(1)}", value)


def forwarded_headers(headers: "aiohttp.typedefs.LooseHeaders") -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        if name.lower() in _HOP_BY_HOP:
            continue
        out[name] = plain_media_type(value) if name.title() in _REWRITTEN else value
    return out


def make_app(backend: str) -> web.Application:
    session: aiohttp.ClientSession | None = None

    async def start(app: web.Application) -> None:
        nonlocal session
        # No automatic decompression: bodies pass through byte for byte.
        session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))

    async def stop(app: web.Application) -> None:
        if session is not None:
            await session.close()

    async def forward(request: web.Request) -> web.StreamResponse:
        assert session is not None
        body = await request.read()
        try:
            async with session.request(
                request.method,
                # raw_path keeps the client's own percent-encoding (index names, ids, query).
                yarl.URL(backend + request.raw_path, encoded=True),
                headers=forwarded_headers(request.headers),
                data=body if body else None,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=upstream.status, headers=headers, body=payload)
        except aiohttp.ClientConnectionError as error:
            # The backend is gone: say so the way a proxy does.
            return web.Response(status=502, text=f"es_shim: backend {backend} unreachable: {error}")

    app = web.Application(client_max_size=1024**3)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def serve(host: str, port: int, backend: str) -> None:
    runner = web.AppRunner(make_app(backend.rstrip("/")), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port to listen on, e.g. 127.0.0.1:9201")
    parser.add_argument("--backend", required=True, help="URL of osmem-server, e.g. http://127.0.0.1:9200")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(host, int(port), args.backend))


if __name__ == "__main__":
    main()
