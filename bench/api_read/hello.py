"""The baseline: a bare aiohttp app answering a small JSON body, served the way the API is (one process, AppRunner)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from shared import eventloop


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=eventloop.CHOICES, default="uvloop")
    args = parser.parse_args()
    eventloop.run(serve(args.port), args.loop)
