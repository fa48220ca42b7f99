"""End to end: exec and logs through the API, relayed from the workspace's agent; others get 404."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.parse

import aiohttp

from shared import access
from tests.harness import wait

A4C = os.path.join(os.path.dirname(sys.executable), "a4c")


async def _stream(base: str, token: str, path: str) -> tuple[bytes, bytes, dict]:
    """Everything a stream sends: (stdout, stderr, the last JSON frame)."""
    out, err = b"", b""
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.ws_connect(base.replace("http://", "ws://") + path) as ws,
    ):
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                if msg.data[0] == access.STDERR:
                    err += msg.data[1:]
                else:
                    out += msg.data[1:]
            elif msg.type == aiohttp.WSMsgType.TEXT:
                return out, err, json.loads(msg.data)
    raise AssertionError(f"the stream ended without a final frame; stdout {out!r}")


async def test_exec_and_logs_reach_the_container_through_the_api_and_nobody_else_s(a4c_system):
    sys_ = a4c_system
    api = sys_.api
    accepted = await api.post(
        "/v1/workspaces",
        {
            "name": "reachable",
            "image_ref": sys_.base_image,
            "cpus": 0.1,
            "memory_mb": 32,
            "disk_gb": 1,
            "command": ["sh", "-c", "echo hello-from-main; echo oops-on-stderr >&2; exec sleep 3600"],
        },
        expect=202,
    )
    ws_id = accepted["workspace"]["id"]

    async def running() -> dict | None:
        ws = await api.get(f"/v1/workspaces/{ws_id}")
        assert ws["observed_state"] not in ("failed", "exited"), ws
        return ws if ws["observed_state"] == "running" else None

    await wait.eventually(running, timeout=60, interval=0.3, message="workspace running")
    base, token = sys_.planes[0].url, api.headers["Authorization"].split()[1]

    command = urllib.parse.quote(json.dumps(["sh", "-c", "echo out-$((6*7)); echo err-line >&2; hostname; exit 3"]))
    out, err, end = await _stream(base, token, f"/v1/workspaces/{ws_id}/exec?command={command}")
    assert end == {"exit_code": 3}
    assert out.decode().splitlines() == ["out-42", ws_id] and err == b"err-line\n"

    out, _, end = await _stream(base, token, f"/v1/workspaces/{ws_id}/logs")
    assert end == {"exit_code": 0}
    assert b"hello-from-main" in out and b"oops-on-stderr" in out

    # The CLI: the command's exit code, its output on stdout, stdin passed with -i.
    env = {**os.environ, "A4C_SERVER": base, "A4C_TOKEN": token}
    done = await asyncio.to_thread(
        subprocess.run,
        [A4C, "workspaces", "exec", "-i", "reachable", "--", "sh", "-c", "cat; exit 5"],
        input=b"piped-in\n",
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 5 and done.stdout == b"piped-in\n", done
    logs = await asyncio.to_thread(subprocess.run, [A4C, "workspaces", "logs", "reachable", "--tail", "5"], capture_output=True, env=env, timeout=60)
    assert logs.returncode == 0 and b"hello-from-main" in logs.stdout, logs

    # Another user: 404, as for every other workspace endpoint, before any upgrade.
    user = await api.post("/v1/users", {"name": "mallory"}, expect=201)
    other = (await api.post(f"/v1/users/{user['id']}/tokens", {"name": "t"}, expect=201))["token"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {other}"}) as http:
        for path in (f"/v1/workspaces/{ws_id}/exec?command={command}", f"/v1/workspaces/{ws_id}/logs"):
            async with http.get(base + path) as resp:
                assert resp.status == 404, await resp.text()
    denied = await asyncio.to_thread(
        subprocess.run,
        [A4C, "workspaces", "exec", ws_id, "--", "id"],
        capture_output=True,
        env={**env, "A4C_TOKEN": other},
        timeout=60,
    )
    assert denied.returncode != 0 and b"hello" not in denied.stdout, denied

    # Text that is not a JSON array is one program run without arguments.
    bare_out, _, bare_end = await _stream(base, token, f"/v1/workspaces/{ws_id}/exec?command=hostname")
    assert bare_end.get("exit_code") == 0 and bare_out.strip(), (bare_out, bare_end)

    # Bad input is a 4xx naming the field; a plain GET (no WebSocket) is a 400 saying how to connect.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(base + f"/v1/workspaces/{ws_id}/exec?command=") as resp:
            body = await resp.text()
            assert resp.status == 422 and "command" in body, body
        async with http.get(base + f"/v1/workspaces/{ws_id}/exec?command=id") as resp:
            body = await resp.text()
            assert resp.status == 400 and "Upgrade: websocket" in body, body

    deleted = await api.delete(f"/v1/workspaces/{ws_id}", expect=202)
    assert deleted["job"]["id"]
