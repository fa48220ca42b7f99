"""/v1/workspaces/{id}/exec and /logs: WebSockets relayed to the workspace's agent.

The caller's token and ownership are checked like every workspace endpoint
(404 for someone else's); the control plane then connects to the agent's
access listener with a one-use grant (controlplane/services/streams.py) and
relays frames both ways unchanged (their format: shared/access.py). Errors
found before the upgrade (not running, agent unreachable) are ordinary JSON
errors; after it, the agent's last frame says how the stream ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing

import aiohttp
import pydantic
from aiohttp import web

from controlplane import errors
from controlplane.api import endpoint, requestlog
from controlplane.services import streams

routes = endpoint.Routes("workspaces")

MAX_FRAME = 1 << 20


class ExecQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    command: str = pydantic.Field(
        min_length=1,
        max_length=65_536,
        description='The program and its arguments as a JSON array of strings, e.g. ["sh","-c","id"] (what a4c workspaces exec sends). '
        "Any other text is one program name run without arguments, e.g. id.",
    )
    tty: bool = pydantic.Field(default=False, description='Give the process a terminal (send resizes as {"resize": [rows, cols]}).')

    def argv(self) -> list[str]:
        # Total on purpose: every string the schema allows means something, so none is refused for its form.
        try:
            parsed = json.loads(self.command)
        except ValueError:
            return [self.command]
        if isinstance(parsed, list) and parsed and len(parsed) <= 256 and all(isinstance(a, str) for a in parsed):
            return parsed
        return [self.command]


class LogsQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    follow: bool = pydantic.Field(default=False, description="Keep streaming new output (up to the agent's access.max_seconds).")
    tail: int | None = pydantic.Field(default=None, ge=0, le=1_000_000, description="Only the last N lines; unset: all.")


@routes.get("/v1/workspaces/{workspace_id}/exec", query=ExecQuery, response=None, raw=True, errors=(400, 404, 409, 503))
async def exec_workspace(call: endpoint.Call) -> web.StreamResponse:
    """Run a command in a running workspace over a WebSocket (binary frames: channel byte + data; last text frame: {"exit_code"})."""
    q: ExecQuery = call.query
    found = await streams.target(call.session, call.user, call.params["workspace_id"], action="exec", argv=q.argv(), tty=q.tty)
    _websocket_only(call.request)
    await call.close()  # no database connection held for a session's length
    return await _relay(call.request, found)


@routes.get("/v1/workspaces/{workspace_id}/logs", query=LogsQuery, response=None, raw=True, errors=(400, 404, 409, 503))
async def workspace_logs(call: endpoint.Call) -> web.StreamResponse:
    """A workspace container's output over a WebSocket (binary frames: channel byte + data; last text frame: {"exit_code"} or {"error"})."""
    q: LogsQuery = call.query
    found = await streams.target(call.session, call.user, call.params["workspace_id"], action="logs", follow=q.follow, tail=q.tail)
    _websocket_only(call.request)
    await call.close()
    return await _relay(call.request, found)


def _websocket_only(request: web.Request) -> None:
    # After the ownership check (someone else's workspace stays a 404), before the agent is
    # connected: a plain GET is a client mistake (400), not a half-open stream.
    if not web.WebSocketResponse().can_prepare(request).ok:
        raise errors.Malformed("this endpoint streams over a WebSocket: connect with 'Upgrade: websocket' (a4c workspaces exec/logs do)")


async def _relay(request: web.Request, found: streams.Target) -> web.StreamResponse:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            upstream = await http.ws_connect(found.url, headers={streams.grants.HEADER: found.header}, heartbeat=30.0, max_msg_size=MAX_FRAME)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (404, 409):
                raise errors.Conflict(
                    f"host {found.host_name}: the workspace's container is not there or not running (the agent said {exc.status})"
                ) from None
            raise errors.Unavailable(f"the agent of host {found.host_name} refused the stream (HTTP {exc.status})") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise errors.Unavailable(f"cannot reach the agent of host {found.host_name}: {exc.__class__.__name__} {exc}") from None
        async with upstream:
            down = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME)
            requestlog.echo(request, down.headers)
            await down.prepare(request)
            pipes = [asyncio.ensure_future(_pipe(upstream, down)), asyncio.ensure_future(_pipe(down, upstream))]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.gather(*pipes, return_exceptions=True)
                await down.close()
                await upstream.close()
            return down


async def _pipe(src: typing.Any, dst: typing.Any) -> None:
    async for msg in src:
        if msg.type == aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type == aiohttp.WSMsgType.TEXT:
            await dst.send_str(msg.data)
