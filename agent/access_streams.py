"""Exec and logs streams for the control plane, over WebSockets: one request, one stream.

Imported only when the first connection reaches the access listener
(agent/access.py): aiohttp is about a fifth of an idle agent's memory.

Only the control plane connects here, with a grant (shared/access.py) signed
with this host's key: one action, one workspace, fresh, used once. Users
reach it only through the control plane, which checks who owns the
workspace; nobody gets the Docker socket. Every stream is bounded:
``access.max_seconds`` of session and ``access.max_output_bytes`` of
output, after which it ends with an ``{"error"}`` frame. Ending a session
early closes the exec's streams; Docker has no way to kill an exec'd
process, so one that ignores a closed terminal keeps running (docs/workspaces.md).

Each stream's Docker connection is read in its own thread, never the Docker
call pool: a long session must not starve commands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import typing

from aiohttp import web

from agent import context as context_mod
from agent import docker_client
from agent.domain import containers as spec_mod
from shared import access

log = logging.getLogger(__name__)

_END = None


def http_server(ctx: context_mod.Context) -> web.Server:
    """aiohttp's low-level server answering ``GET`` on :data:`shared.access.PATH`: the access listener's protocol factory."""
    return web.Server(Streams(ctx).handle, access_log=None)


class Streams:
    def __init__(self, ctx: context_mod.Context) -> None:
        self.ctx = ctx
        self._nonces: dict[str, float] = {}

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != access.PATH:
            return web.json_response({"error": f"no such path; streams are at {access.PATH}"}, status=404)
        if request.method != "GET":
            return web.json_response({"error": "streams are opened with GET"}, status=405, headers={"Allow": "GET"})
        return await self._stream(request)

    # -- one stream -------------------------------------------------------------

    async def _stream(self, request: web.BaseRequest) -> web.StreamResponse:
        settings = self.ctx.settings.access
        now = time.time()
        self._nonces = {n: t for n, t in self._nonces.items() if now - t <= settings.grant_max_age}
        try:
            grant = access.decode(
                request.headers.get(access.HEADER, ""),
                self.ctx.identity.key,
                host_id=self.ctx.host_id,
                now=now,
                max_age=settings.grant_max_age,
                seen=self._nonces,
            )
        except access.GrantError as exc:
            log.warning("access refused", extra={"reason": str(exc), "remote": request.remote})
            return web.json_response({"error": f"grant refused: {exc}"}, status=403)
        self._nonces[grant.nonce] = now
        try:
            name = spec_mod.container_name(grant.workspace_id, self.ctx.host_id)
            info = await self.ctx.docker.inspect_container(name)
        except (spec_mod.SpecError, docker_client.NotFound):
            return web.json_response({"error": "no container of this workspace on this host"}, status=404)
        if not spec_mod.is_owned((info.get("Config") or {}).get("Labels"), self.ctx.host_id):
            return web.json_response({"error": "no container of this workspace on this host"}, status=404)
        if grant.action == "exec" and not (info.get("State") or {}).get("Running"):
            return web.json_response({"error": "the workspace's container is not running"}, status=409)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        log.info("access stream", extra={"action": grant.action, "workspace_id": grant.workspace_id, "user": grant.user, "argv": grant.argv})
        try:
            if grant.action == "exec":
                await self._exec(ws, name, grant)
            else:
                await self._logs(ws, name, grant)
        except docker_client.DockerError as exc:
            await _final(ws, {"error": f"docker: {exc}"})
        return ws

    async def _exec(self, ws: web.WebSocketResponse, name: str, grant: access.Grant) -> None:
        docker = self.ctx.docker
        exec_id, sock, client = await docker.exec_open(name, grant.argv, tty=grant.tty)
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        reader = _pump(queue, lambda: docker.exec_frames(sock, tty=grant.tty))
        feeder = asyncio.ensure_future(self._feed(ws, sock, exec_id))
        try:
            ended = await self._relay(ws, queue, feeder)
            code = await _exit_code(docker, exec_id) if ended is None else None
            await _final(ws, {"exit_code": code} if ended is None else {"error": ended})
        finally:
            feeder.cancel()
            _close(sock)
            client.close()
            reader.join(timeout=5)

    async def _feed(self, ws: web.WebSocketResponse, sock: typing.Any, exec_id: str) -> None:
        """Client -> exec: stdin frames, resizes, end of stdin. Returns when the client goes."""
        loop = asyncio.get_running_loop()
        async for msg in ws:
            if msg.type == web.WSMsgType.BINARY and msg.data[:1] == bytes([access.STDIN]):
                await loop.run_in_executor(None, sock.sendall, msg.data[1:])
            elif msg.type == web.WSMsgType.TEXT:
                try:
                    control = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(control.get("resize"), list) and len(control["resize"]) == 2:
                    rows, cols = (int(v) for v in control["resize"])
                    await self.ctx.docker.exec_resize(exec_id, rows, cols)
                elif control.get("stdin_eof"):
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass

    async def _logs(self, ws: web.WebSocketResponse, name: str, grant: access.Grant) -> None:
        settings = self.ctx.settings.access
        stream, client = await self.ctx.docker.logs_open(name, follow=grant.follow, tail=grant.tail, timeout=settings.max_seconds)
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        reader = _pump(queue, lambda: ((access.STDOUT, chunk) for chunk in stream))
        watcher = asyncio.ensure_future(_drain(ws))  # notices the client leaving
        try:
            ended = await self._relay(ws, queue, watcher)
            await _final(ws, {"exit_code": 0} if ended is None else {"error": ended})
        finally:
            watcher.cancel()
            _close(stream)
            client.close()
            reader.join(timeout=5)

    async def _relay(self, ws: web.WebSocketResponse, queue: asyncio.Queue, client_side: asyncio.Future) -> str | None:
        """Output -> client until the output ends (None), or why it was cut short."""
        settings = self.ctx.settings.access
        deadline = time.monotonic() + settings.max_seconds
        sent = 0
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, client_side}, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return "the client went away" if client_side in done else f"session time limit ({settings.max_seconds:g} s) reached"
            item = getter.result()
            if item is _END:
                return None
            channel, data = item
            sent += len(data)
            if sent > settings.max_output_bytes:
                return f"output limit ({settings.max_output_bytes} bytes) reached"
            await ws.send_bytes(access.frame(channel, data))


def _pump(queue: asyncio.Queue, frames: typing.Callable[[], typing.Iterable[tuple[int, bytes]]]) -> threading.Thread:
    """Read blocking frames in a thread of their own into ``queue``; ``None`` marks the end."""
    loop = asyncio.get_running_loop()

    def run() -> None:
        try:
            for item in frames():
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except Exception as exc:  # noqa: BLE001 - a closed stream ends the session; anything else is logged
            if not isinstance(exc, (OSError, ValueError)):
                log.warning("access stream read failed", extra={"error": repr(exc)})
        finally:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, _END)
            except RuntimeError:
                pass  # the loop is closed: the agent is stopping

    thread = threading.Thread(target=run, name="access-stream", daemon=True)
    thread.start()
    return thread


async def _exit_code(docker: docker_client.Docker, exec_id: str) -> int | None:
    """The exit code once Docker has noted it (it may lag the end of the output a little)."""
    deadline = time.monotonic() + 5.0
    while True:
        code = await docker.exec_exit_code(exec_id)
        if code is not None or time.monotonic() > deadline:
            return code
        await asyncio.sleep(0.05)


async def _drain(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


async def _final(ws: web.WebSocketResponse, body: dict[str, typing.Any]) -> None:
    if not ws.closed:
        await ws.send_str(json.dumps(body))
        await ws.close()


def _close(thing: typing.Any) -> None:
    try:
        thing.close()
    except Exception:  # noqa: BLE001, S110 - closing a stream that is already gone
        pass
