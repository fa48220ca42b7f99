"""Fixtures of the dashboard's browser tests: a real control plane, real data, real headless Chromium.

* ``start_dashboard(**setting_overrides)`` starts a control plane
  (``init_app`` + ``AppRunner``) on a free 127.0.0.1 port against the
  module's database and returns its base URL; all stop at teardown.
* ``db`` is an asyncpg connection to that database, emptied of jobs,
  workspaces and hosts first; ``people`` are the generated users (alice,
  bob…) plus an admin, with API tokens.
* ``page`` is a tab of Debian's Chromium driven by Playwright (never a
  downloaded browser), in a fresh profile, 1280 px wide. An uncaught
  JavaScript error in the page fails the test.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import pathlib
import typing
import uuid

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from playwright import async_api as pw

from controlplane import settings as cp_settings
from controlplane.api import app as api_app
from controlplane.db import engine as db_engine
from controlplane.db import models
from controlplane.services import users
from shared import signing
from tests.harness import jobgen, ports

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: pw.ViewportSize = {"width": 1280, "height": 900}


def settings_for(database_url: str, **overrides: typing.Any) -> cp_settings.Settings:
    values: dict[str, typing.Any] = {
        "database.url": database_url,
        "database.pool_size": 5,
        "http.host": "127.0.0.1",
        "http.port": 0,
        "rate_limit.enabled": False,
        "search.elasticsearch_url": None,
    }
    values.update(overrides)
    return cp_settings.load(environ={}, **values)


@pytest.fixture
async def start_dashboard(database_url: str) -> typing.AsyncIterator[typing.Callable[..., typing.Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: typing.Any) -> str:
        app = api_app.init_app(settings_for(database_url, **overrides))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        port = ports.free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def db(database_url: str) -> typing.AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    # The database lives for the module; each test starts from no jobs, workspaces or hosts.
    await conn.execute("TRUNCATE jobs, outbox, workspaces, hosts CASCADE")
    await conn.executemany(
        "INSERT INTO users (id, name, role) VALUES ($1, $2, 'user') ON CONFLICT (id) DO NOTHING",
        [(u.id, u.name) for u in jobgen.users()],
    )
    yield conn
    await conn.close()


@dataclasses.dataclass(frozen=True)
class Person:
    id: uuid.UUID
    name: str
    token: str


@dataclasses.dataclass(frozen=True)
class People:
    admin: Person
    alice: Person
    bob: Person


@pytest.fixture
async def people(db: asyncpg.Connection, database_url: str) -> typing.AsyncIterator[People]:
    engine = db_engine.create(settings_for(database_url).database)
    generated = {u.name: u.id for u in jobgen.users()}
    try:
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            admin = await users.create_user(session, f"root{uuid.uuid4().hex[:6]}", models.Role.ADMIN)
            found = {"admin": Person(admin.id, admin.name, (await users.issue_token(session, admin.id, name="web")).token)}
            for name in ("alice", "bob"):
                found[name] = Person(generated[name], name, (await users.issue_token(session, generated[name], name="web")).token)
        yield People(**found)
    finally:
        await engine.dispose()


async def load_jobs(conn: asyncpg.Connection, count: int, *, seed: int = 1) -> list[tuple]:
    """``count`` generated jobs (tests/harness/jobgen.py), loaded with COPY."""
    rows = list(jobgen.jobs(count, seed=seed))
    await conn.copy_records_to_table("jobs", records=rows, columns=list(jobgen.COLUMNS))
    return rows


@pytest.fixture
async def http() -> typing.AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def chromium(tmp_path: pathlib.Path) -> typing.AsyncIterator[pw.BrowserContext]:
    if not pathlib.Path(CHROMIUM).exists():  # noqa: ASYNC240 - one stat before the browser starts
        pytest.fail(f"{CHROMIUM} is missing: the browser tests drive Debian's chromium (make deps, or apt-get install chromium)")
    async with pw.async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir per test
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            locale="en-GB",
            timezone_id="UTC",
        )
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def page(chromium: pw.BrowserContext) -> typing.AsyncIterator[pw.Page]:
    tab = chromium.pages[0] if chromium.pages else await chromium.new_page()
    tab.set_default_timeout(30_000)  # generous: the suite shares two cores with the servers it starts
    crashes: list[str] = []
    tab.on("pageerror", lambda error: crashes.append(str(error)))
    # Shown by pytest when a test fails: what the page said and which requests failed.
    tab.on("console", lambda message: print(f"[browser {message.type}] {message.text}"))
    tab.on("requestfailed", lambda request: print(f"[browser request failed] {request.method} {request.url}: {request.failure}"))
    yield tab
    assert not crashes, f"the dashboard threw uncaught JavaScript errors: {crashes}"


GIB = 1024**3


@pytest.fixture
async def add_host(db: asyncpg.Connection, database_url: str) -> typing.AsyncIterator[typing.Callable[..., typing.Awaitable[models.Host]]]:
    """``await add_host(name, disk_used=..., ...)``: a host row with a disk report, as an enrolled agent's reports leave it."""
    engine = db_engine.create(settings_for(database_url).database)

    async def add(
        name: str,
        *,
        cpus: float = 16,
        memory_mb: int = 65_536,
        disk_total: int = 500 * GIB,
        disk_used: int | None = 100 * GIB,
        heartbeat_age: float | None = 5.0,
        high_watermark: float | None = None,
        status: models.HostStatus = models.HostStatus.ACTIVE,
        cordoned: bool = False,
    ) -> models.Host:
        now = datetime.datetime.now(datetime.UTC)
        report: dict[str, typing.Any] | None = None
        if disk_used is not None:
            report = {
                "paths": [
                    {
                        "path": "/var/lib/docker",
                        "total_bytes": disk_total,
                        "used_bytes": disk_used,
                        "free_bytes": disk_total - disk_used,
                        "percent": round(100 * disk_used / disk_total, 1),
                    }
                ],
                "docker": {"images": disk_used // 2, "build_cache": disk_used // 10},
                "workspaces": {},
            }
            if high_watermark is not None:
                report["high_watermark"] = high_watermark
        host = models.Host(
            id=uuid.uuid4(),
            name=name,
            status=status,
            cordoned=cordoned,
            labels={},
            signing_key=signing.new_key(),
            agent_version="0.1.0",
            capacity_cpus=decimal.Decimal(str(cpus)),
            capacity_memory_mb=memory_mb,
            capacity_disk_bytes=disk_total,
            disk_total_bytes=disk_total if disk_used is not None else None,
            disk_used_bytes=disk_used,
            disk_report=report,
            disk_reported_at=now if disk_used is not None else None,
            last_heartbeat_at=None if heartbeat_age is None else now - datetime.timedelta(seconds=heartbeat_age),
            down_since=now - datetime.timedelta(minutes=7) if status is models.HostStatus.DOWN else None,
        )
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            session.add(host)
        return host

    yield add
    await engine.dispose()
