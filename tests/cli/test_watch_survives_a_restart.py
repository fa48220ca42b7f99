"""``a4c jobs logs --follow`` watches with blocking reads, and survives the API going away and coming back (a4c/watch.py).

The API is an app instance served in this test's event loop on a fixed
port, against the test's own PostgreSQL database; the CLI is the installed
``a4c`` script in a subprocess, read line by line as it prints. While the
API is down the job changes in the database; when the API is back on the
same port the CLI prints that change and goes on blocking until the job ends.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import pathlib
import sys
import typing

import aiohttp
import prometheus_client
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.api import app as api_app
from controlplane.api import listener
from controlplane.db import engine as db_engine
from tests.controlplane.api.conftest import Seed, settings_for
from tests.harness import ports, wait

BIN = pathlib.Path(sys.executable).parent


def waiting() -> float:
    return prometheus_client.REGISTRY.get_sample_value("a4c_watch_waiting") or 0.0


class Api:
    """One API instance that can be stopped and started again on the same port."""

    def __init__(self, database_url: str) -> None:
        self.settings = settings_for(database_url)
        self.port = ports.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        self.runner = listener.runner(api_app.init_app(self.settings), self.settings.http, shutdown_timeout=1)
        await self.runner.setup()
        await listener.start(self.runner, self.settings.http, host="127.0.0.1", port=self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class Lines:
    """A subprocess stream read in the background, line by line, so a test can wait for one."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.seen: list[str] = []
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.seen.append(line.decode().rstrip("\n"))

    async def wait_for(self, text: str, timeout: float = 30) -> None:
        await wait.eventually(lambda: any(text in line for line in self.seen), timeout=timeout, message=f"no line with {text!r}: {self.seen}")

    async def done(self) -> list[str]:
        await self._task
        return self.seen


async def test_following_a_job_falls_back_to_polling_while_the_api_is_down_and_resumes_when_it_is_back(database_url, tmp_path):
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    seed = Seed(db_engine.sessionmaker(engine))
    api = Api(database_url)
    await api.start()
    cli: asyncio.subprocess.Process | None = None
    try:
        user = await seed.user()

        async def set_job(**values: typing.Any) -> None:
            async with seed.sessions() as session, session.begin():
                sets = ", ".join(f"{k} = :{k}" for k in values)
                await session.execute(sa.text(f"UPDATE jobs SET {sets} WHERE id = :id"), {**values, "id": job_id})

        # A workspace with no host to go to: its create job stays pending until this test moves it.
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {user.token}"}) as http:
            body = {"name": "watched", "image_ref": "debian:12", "cpus": 200, "memory_mb": 256, "disk_gb": 1}
            async with http.post(api.url + "/v1/workspaces", json=body) as resp:
                assert resp.status == 202, await resp.text()
                job_id = (await resp.json())["job"]["id"]

        before = waiting()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("A4C_")},
            "A4C_SERVER": api.url,
            "A4C_TOKEN": user.token,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
        cli = await asyncio.create_subprocess_exec(
            str(BIN / "a4c"),
            "jobs",
            "logs",
            job_id,
            "--follow",
            "--timeout",
            "120",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert cli.stdout is not None and cli.stderr is not None
        out, err = Lines(cli.stdout), Lines(cli.stderr)
        await wait.eventually(lambda: waiting() >= before + 1, timeout=30, message="the CLI never blocked on the job")

        await set_job(status="running", log_tail="line one\n")
        await out.wait_for("line one")

        await api.stop()
        await set_job(log_tail="line one\nline two\n")
        await err.wait_for("polling every")

        await api.start()
        await out.wait_for("line two")
        await err.wait_for("watching resumes")
        # Blocking again, not polling: the change below reaches it through the API's change feed.
        await wait.eventually(lambda: waiting() >= before + 1, timeout=30, message="the CLI did not block again after the restart")
        await set_job(status="succeeded", log_tail="line one\nline two\nline three\n", finished_at=datetime.datetime.now(datetime.UTC))
        code = await asyncio.wait_for(cli.wait(), 60)
        stdout, stderr = await out.done(), await err.done()
        assert code == 0, f"exit {code}\n{stdout}\n{stderr}"
        assert stdout == ["line one", "line two", "line three"], stdout
    finally:
        if cli is not None and cli.returncode is None:
            cli.kill()
            await cli.wait()
        await api.stop()
        await engine.dispose()
