"""Real control-plane and agent processes for end-to-end tests.

Each runs as its own OS process from the installed console scripts, with a
generated YAML config, so tests exercise exactly what an operator runs and
can ``kill -9`` either side. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import subprocess
import sys
import typing

import aiohttp
import yaml

from tests.harness import ports, processes, wait

BIN = pathlib.Path(sys.executable).parent


def _write(path: pathlib.Path, data: dict[str, typing.Any]) -> pathlib.Path:
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    return path


def _merge(base: dict[str, typing.Any], extra: dict[str, typing.Any]) -> dict[str, typing.Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


@dataclasses.dataclass
class ControlPlane:
    """``a4c-controlplane run`` on a free port."""

    workdir: pathlib.Path
    name: str
    config: dict[str, typing.Any]
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> ControlPlane:
        self.port = self.port or ports.free_port()
        config = _merge(self.config, {"http": {"host": "127.0.0.1", "port": self.port}})
        path = _write(self.workdir / f"{self.name}.yaml", config)
        self.process = processes.spawn([str(BIN / "a4c-controlplane"), "run", "--config", str(path)], self.log)
        wait.wait_until(self._ready, timeout=30, message=f"{self.name} ready at {self.url}/readyz\n{processes.log_tail(self.log)}")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{processes.log_tail(self.log)}")
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, grace=15)

    def kill(self) -> None:
        if self.process is not None:
            processes.kill(self.process)


@dataclasses.dataclass
class Agent:
    """``a4c-agent run`` with its own state directory and host name."""

    workdir: pathlib.Path
    name: str
    config: dict[str, typing.Any]
    process: subprocess.Popen | None = None

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / f"{self.name}.log"

    @property
    def state_dir(self) -> pathlib.Path:
        return pathlib.Path(self.config["agent"]["state_dir"])

    @property
    def host_id(self) -> str | None:
        try:
            return json.loads((self.state_dir / "identity.json").read_text())["host_id"]
        except (OSError, ValueError, KeyError):
            return None

    def start(self) -> Agent:
        path = _write(self.workdir / f"{self.name}.yaml", self.config)
        self.process = processes.spawn([str(BIN / "a4c-agent"), "run", "--config", str(path)], self.log)
        return self

    def wait_enrolled(self, timeout: float = 30) -> str:
        def enrolled() -> str | None:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{processes.log_tail(self.log)}")
            return self.host_id

        return wait.wait_until(enrolled, timeout=timeout, message=f"{self.name} enrolled\n{processes.log_tail(self.log)}")

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, grace=30)

    def kill(self) -> None:
        if self.process is not None:
            processes.kill(self.process)


class Api:
    """A thin async client for the tests: raises with the body on unexpected statuses."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, *, expect: int | tuple[int, ...] = (200, 201, 202), **kwargs) -> typing.Any:
        expected = (expect,) if isinstance(expect, int) else expect
        async with aiohttp.ClientSession(headers=self.headers) as session, session.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            if resp.status not in expected:
                raise AssertionError(f"{method} {path} -> {resp.status}: {text}")
            return json.loads(text) if text else None

    async def get(self, path: str, **kw) -> typing.Any:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: typing.Any = None, **kw) -> typing.Any:
        return await self.call("POST", path, json=body if body is not None else {}, **kw)

    async def delete(self, path: str, **kw) -> typing.Any:
        return await self.call("DELETE", path, **kw)


def create_admin(config_path: pathlib.Path, workdir: pathlib.Path) -> str:
    token_file = workdir / "admin.token"
    subprocess.run(
        [str(BIN / "a4c-controlplane"), "create-admin", "--config", str(config_path), "--name", "admin", "--token-file", str(token_file)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return token_file.read_text().strip()


async def poll(check: typing.Callable[[], typing.Awaitable[typing.Any]], *, timeout: float, message: str) -> typing.Any:
    return await wait.eventually(check, timeout=timeout, interval=0.1, message=message)


def run_sync(coro: typing.Awaitable[typing.Any]) -> typing.Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def agreement(api: Api, docker_client: typing.Any, host_ids: typing.Iterable[str]) -> str | None:
    """None when PostgreSQL (through the API), the Docker daemon and the hosts agree; else what differs.

    * every live workspace meant to run has exactly one container, running, on its host;
    * every a4c container of these hosts belongs to a live workspace placed on that host;
    * no job is stuck in a non-final state.
    """
    hosts = set(host_ids)
    workspaces = (await api.get("/v1/workspaces?limit=200"))["items"]
    containers = [c for c in docker_client.containers.list(all=True, filters={"label": "a4c.workspace"}) if c.labels.get("a4c.host") in hosts]
    by_ws: dict[str, list[typing.Any]] = {}
    for c in containers:
        by_ws.setdefault(c.labels["a4c.workspace"], []).append(c)
    problems = []
    live = {w["id"]: w for w in workspaces if w["host_id"] in hosts and w["observed_state"] != "deleted"}
    for ws_id, ws in live.items():
        found = by_ws.get(ws_id, [])
        if ws["desired_state"] == "running":
            if ws["observed_state"] != "running":
                problems.append(f"{ws['name']}: API says {ws['observed_state']} ({ws['state_reason']})")
            if len(found) != 1:
                problems.append(f"{ws['name']}: {len(found)} containers")
            elif found[0].status != "running" or found[0].labels["a4c.host"] != ws["host_id"]:
                problems.append(f"{ws['name']}: container {found[0].status} on {found[0].labels['a4c.host']}")
            elif ws["container_id"] != found[0].id:
                problems.append(f"{ws['name']}: API container {ws['container_id']} but Docker has {found[0].id}")
    for ws_id in set(by_ws) - set(live):
        problems.append(f"orphan container(s) for workspace {ws_id}: {[c.short_id for c in by_ws[ws_id]]}")
    jobs = (await api.get("/v1/jobs?limit=200"))["items"]
    stuck = [
        f"{j['kind']} {j['id']} {j['status']} ({j['reason']})"
        for j in jobs
        if j["status"] in ("queued", "dispatched", "running") and j.get("host_id") in hosts
    ]
    if stuck:
        problems.append(f"unfinished jobs: {stuck}")
    return "; ".join(problems) or None
