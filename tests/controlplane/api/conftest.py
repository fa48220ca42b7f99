"""Fixtures for the HTTP API tests: real app instances on free loopback ports, against the module's database.

* ``start_api(**setting_overrides)`` starts one more instance (``init_app`` +
  ``AppRunner`` on 127.0.0.1:0) and returns its base URL; all stop at teardown.
* ``api`` is one instance with default settings (rate limits high enough
  not to interfere); ``client(token)`` an HTTP client for it.
* ``seed`` writes users, tokens and hosts straight through the services, so a
  test can set up state the API deliberately does not let users create.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import typing
import uuid

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.api import app as api_app
from controlplane.api import listener
from controlplane.db import engine as db_engine
from controlplane.db import models
from controlplane.services import users
from shared import signing

GIB = 1024**3


def settings_for(database_url: str, **overrides: typing.Any) -> cp_settings.Settings:
    values: dict[str, typing.Any] = {
        "database.url": database_url,
        "database.pool_size": 5,
        "http.host": "127.0.0.1",
        "http.port": 0,
        "rate_limit.per_token_rps": 10_000,
        "rate_limit.per_token_burst": 10_000,
        "rate_limit.anonymous_rps": 10_000,
        "rate_limit.anonymous_burst": 10_000,
    }
    values.update(overrides)
    return cp_settings.load(environ={}, **values)


@dataclasses.dataclass
class Answer:
    status: int
    body: typing.Any
    headers: typing.Mapping[str, str]

    def error_fields(self) -> list[str]:
        return [f["path"] for f in self.body["error"]["fields"]]


class Client:
    """A thin JSON client: every call returns status, parsed body and headers."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str | None = None) -> None:
        self.http = http
        self.base_url = base_url
        self.token = token

    def as_(self, token: str | None) -> Client:
        return Client(self.http, self.base_url, token)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: typing.Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        async with self.http.request(method, self.base_url + path, json=json, data=data, headers=sent, params=params) as resp:
            raw = await resp.read()
            body: typing.Any = None
            if raw and resp.content_type == "application/json":
                body = await resp.json()
            elif raw:
                body = raw.decode()
            return Answer(resp.status, body, resp.headers)

    async def get(self, path: str, **kw: typing.Any) -> Answer:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: typing.Any = None, **kw: typing.Any) -> Answer:
        return await self.request("POST", path, json=json, **kw)

    async def patch(self, path: str, json: typing.Any = None, **kw: typing.Any) -> Answer:
        return await self.request("PATCH", path, json=json, **kw)

    async def delete(self, path: str, **kw: typing.Any) -> Answer:
        return await self.request("DELETE", path, **kw)


@pytest.fixture
async def start_api(database_url: str) -> typing.AsyncIterator[typing.Callable[..., typing.Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: typing.Any) -> str:
        settings = settings_for(database_url, **overrides)
        app = api_app.init_app(settings)
        # Served as a4c-controlplane run serves it (header deadline, connection caps, cancellation).
        runner = listener.runner(app, settings.http, shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        site = await listener.start(runner, settings.http, host="127.0.0.1", port=0)
        port = site.port
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def http() -> typing.AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        yield session


@pytest.fixture
async def api(start_api: typing.Callable[..., typing.Awaitable[str]]) -> str:
    return await start_api()


@pytest.fixture
def client(api: str, http: aiohttp.ClientSession) -> typing.Callable[[str | None], Client]:
    def make(token: str | None = None) -> Client:
        return Client(http, api, token)

    return make


@dataclasses.dataclass
class SeededUser:
    id: uuid.UUID
    name: str
    token: str
    role: models.Role


class Seed:
    def __init__(self, sessions: sa_asyncio.async_sessionmaker) -> None:
        self.sessions = sessions

    async def user(self, role: models.Role = models.Role.USER, name: str | None = None) -> SeededUser:
        name = name or f"u{uuid.uuid4().hex[:10]}"
        async with self.sessions() as session, session.begin():
            row = await users.create_user(session, name, role)
            issued = await users.issue_token(session, row.id, name="test")
        return SeededUser(row.id, name, issued.token, role)

    async def admin(self) -> SeededUser:
        return await self.user(models.Role.ADMIN)

    async def host(
        self,
        name: str | None = None,
        *,
        cpus: float = 8,
        memory_mb: int = 16_384,
        disk_total: int = 100 * GIB,
        disk_used: int | None = 10 * GIB,
        heartbeat_age: float | None = 0.0,
        cordoned: bool = False,
        status: models.HostStatus = models.HostStatus.ACTIVE,
    ) -> models.Host:
        now = datetime.datetime.now(datetime.UTC)
        host = models.Host(
            id=uuid.uuid4(),
            name=name or f"h{uuid.uuid4().hex[:10]}",
            status=status,
            cordoned=cordoned,
            labels={},
            signing_key=signing.new_key(),
            agent_version="test",
            capacity_cpus=decimal.Decimal(str(cpus)),
            capacity_memory_mb=memory_mb,
            capacity_disk_bytes=disk_total,
            disk_total_bytes=disk_total,
            disk_used_bytes=disk_used,
            disk_report=None
            if disk_used is None
            else {
                "paths": [
                    {
                        "path": "/var/lib/docker",
                        "total_bytes": disk_total,
                        "used_bytes": disk_used,
                        "free_bytes": disk_total - disk_used,
                        "percent": round(100 * disk_used / disk_total, 1),
                    }
                ],
                "docker": {"images": 123},
                "workspaces": {},
            },
            disk_reported_at=now if disk_used is not None else None,
            last_heartbeat_at=None if heartbeat_age is None else now - datetime.timedelta(seconds=heartbeat_age),
        )
        async with self.sessions() as session, session.begin():
            session.add(host)
        return host

    async def scalar(self, statement: typing.Any, **params: typing.Any) -> typing.Any:
        async with self.sessions() as session:
            return await session.scalar(statement, params)

    async def all(self, statement: typing.Any, **params: typing.Any) -> list[typing.Any]:
        async with self.sessions() as session:
            return list((await session.execute(statement, params)).all())


@pytest.fixture
async def seed(database_url: str) -> typing.AsyncIterator[Seed]:
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    try:
        yield Seed(db_engine.sessionmaker(engine))
    finally:
        await engine.dispose()
