"""The dashboard benchmark's data: a throwaway migrated database with generated jobs (COPY), users and an admin token."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import typing
import urllib.parse

import asyncpg

from bench import postgres
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.db import migrate, models
from controlplane.services import users
from tests.harness import jobgen

DEFAULT_ADMIN_URL = None  # bench/postgres.py: --admin-url, else 127.0.0.1:5432, else an embedded server
CHUNK = 50_000


def _with_database(admin_url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def temporary(admin_url: str | None = DEFAULT_ADMIN_URL) -> typing.Iterator[str]:
    """Create and migrate a database ``a4c_bench_dashboard_<random>``, drop it afterwards; yields its URL."""
    with postgres.server(admin_url) as admin_url:
        name = f"a4c_bench_dashboard_{secrets.token_hex(4)}"
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
        try:
            url = _with_database(admin_url, name)
            migrate.upgrade(url)
            yield url
        finally:
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def load(url: str, count: int, *, seed: int = 1, progress: typing.Callable[[str], None] = print) -> float:
    """Insert ``count`` generated jobs with COPY (in chunks, bounded memory) and ANALYZE; returns seconds taken."""
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO users (id, name, role) VALUES ($1, $2, 'user') ON CONFLICT (id) DO NOTHING",
            [(u.id, u.name) for u in jobgen.users()],
        )
        batch: list[tuple] = []
        done = 0
        for row in jobgen.jobs(count, seed=seed):
            batch.append(row)
            if len(batch) == CHUNK:
                await conn.copy_records_to_table("jobs", records=batch, columns=list(jobgen.COLUMNS))
                done += len(batch)
                batch.clear()
                progress(f"  {done:,} jobs loaded ({time.perf_counter() - started:.0f} s)")
        if batch:
            await conn.copy_records_to_table("jobs", records=batch, columns=list(jobgen.COLUMNS))
        await conn.execute("VACUUM ANALYZE jobs")  # as after any bulk load: visibility map and statistics
    finally:
        await conn.close()
    return time.perf_counter() - started


async def admin_token(url: str) -> str:
    settings = cp_settings.load(environ={}, **{"database.url": url})
    engine = db_engine.create(settings.database)
    try:
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            admin = await users.create_user(session, f"bench{secrets.token_hex(3)}", models.Role.ADMIN)
            return (await users.issue_token(session, admin.id, name="bench")).token
    finally:
        await engine.dispose()


async def job_count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM jobs"))
    finally:
        await conn.close()
