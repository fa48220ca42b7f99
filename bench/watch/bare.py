"""The baseline: a bare aiohttp long poll, served the way the API is (one process, AppRunner, handler cancellation).

``GET /wait/{key}`` waits on one future per request until ``POST /poke/{key}``
resolves it: the least an aiohttp server can spend on a waiting request.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

WAITING = web.AppKey("waiting", dict)


async def wait(request: web.Request) -> web.Response:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    key = request.match_info["key"]
    request.app[WAITING].setdefault(key, []).append(future)
    try:
        async with asyncio.timeout(float(request.query.get("wait", "300"))):
            await future
    except TimeoutError:
        pass
    finally:
        waiters = request.app[WAITING].get(key, [])
        if future in waiters:
            waiters.remove(future)
    return web.json_response({"key": key})


async def poke(request: web.Request) -> web.Response:
    woken = 0
    for future in request.app[WAITING].pop(request.match_info["key"], []):
        if not future.done():
            future.set_result(None)
            woken += 1
    return web.json_response({"woken": woken})


async def count(request: web.Request) -> web.Response:
    return web.json_response({"waiting": sum(len(w) for w in request.app[WAITING].values())})


async def serve(port: int) -> None:
    app = web.Application()
    app[WAITING] = {}
    app.router.add_get("/wait/{key}", wait)
    app.router.add_post("/poke/{key}", poke)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))
