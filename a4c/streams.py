"""``a4c workspaces exec`` and ``logs``: one WebSocket to the API, relayed to the terminal.

The API relays the workspace agent's stream (controlplane/api/views/streams.py);
frames are a channel byte plus data, and a last JSON text frame with the
exit code or the reason the stream was cut (shared/access.py). With a
terminal on stdin, ``exec`` puts it in raw mode (restored on exit) and
sends its size, then every change of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import threading
import tty as tty_mod
import typing
import urllib.parse

import aiohttp

from a4c import client as client_mod
from a4c import errors
from shared import access

MAX_FRAME = 1 << 20


def run(api: client_mod.Client, path: str, params: dict[str, str], *, stdin: bool, tty: bool) -> int:
    """Stream until the end; the exit code of the command (or 0 for logs), 1 if the stream was cut short."""
    url = api.server.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + path + "?" + urllib.parse.urlencode(params)
    return asyncio.run(_run(api, url, stdin=stdin, tty=tty))


async def _run(api: client_mod.Client, url: str, *, stdin: bool, tty: bool) -> int:
    headers = {"Authorization": f"Bearer {api.token}"} if api.token else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=api.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            ws = await http.ws_connect(url, headers=headers, heartbeat=30.0, max_msg_size=MAX_FRAME)
        except aiohttp.WSServerHandshakeError as exc:
            raise await _refused(http, url, headers, exc) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise errors.Unreachable(f"cannot reach the A4C API at {api.server}: {exc}") from None
        async with ws:
            with _raw_terminal(tty):
                feeder = asyncio.ensure_future(_feed(ws, stdin=stdin, tty=tty))
                try:
                    return await _receive(ws)
                finally:
                    feeder.cancel()
                    with contextlib.suppress(BaseException):
                        await feeder


async def _refused(http: aiohttp.ClientSession, url: str, headers: dict[str, str], exc: aiohttp.WSServerHandshakeError) -> errors.CliError:
    """The API's JSON error for a refused upgrade (404 for someone else's workspace, 409 not running…): asked again as plain GET."""
    plain = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    try:
        async with http.get(plain, headers=headers) as resp:
            detail = (await resp.json(content_type=None)).get("error") or {}
            return errors.ApiError(
                resp.status, str(detail.get("code", resp.status)), str(detail.get("message", exc.message)), detail.get("fields") or []
            )
    except (aiohttp.ClientError, ValueError, AttributeError):
        return errors.ApiError(exc.status, str(exc.status), exc.message or "the stream was refused")


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> int:
    out, err = sys.stdout.buffer, sys.stderr.buffer
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY and msg.data:
            target = err if msg.data[0] == access.STDERR else out
            target.write(msg.data[1:])
            target.flush()
        elif msg.type == aiohttp.WSMsgType.TEXT:
            end = json.loads(msg.data)
            if "error" in end:
                sys.stderr.write(f"\r\na4c: {end['error']}\n")
                return 1
            code = end.get("exit_code")
            return code if isinstance(code, int) else 1
    sys.stderr.write("a4c: the stream ended without an exit status\n")
    return 1


async def _feed(ws: aiohttp.ClientWebSocketResponse, *, stdin: bool, tty: bool) -> None:
    loop = asyncio.get_running_loop()
    if tty:
        await _resize(ws)
        loop.add_signal_handler(signal.SIGWINCH, lambda: asyncio.ensure_future(_resize(ws)))
    if not stdin:
        await ws.send_str(json.dumps({"stdin_eof": True}))
        return
    fd = sys.stdin.fileno()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def read() -> None:
        # A daemon thread, not the loop's reader: stdin may be a regular file (no epoll), and a read
        # still blocked when the command has ended must not keep the CLI from exiting.
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, data)
            except RuntimeError:
                return  # the command ended and the loop with it
            if not data:
                return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while True:
        data = await chunks.get()
        if not data:
            await ws.send_str(json.dumps({"stdin_eof": True}))
            return
        await ws.send_bytes(access.frame(access.STDIN, data))


async def _resize(ws: aiohttp.ClientWebSocketResponse) -> None:
    size = shutil.get_terminal_size()
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(json.dumps({"resize": [size.lines, size.columns]}))


@contextlib.contextmanager
def _raw_terminal(tty: bool) -> typing.Iterator[None]:
    if not tty:
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty_mod.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
