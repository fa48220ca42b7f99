"""The PostgreSQL schema: migrations round-trip, and constraints make bad states unrepresentable."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from alembic import autogenerate, migration
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import engine as db_engine
from controlplane.db import migrate, models


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


def test_alembic_upgrade_downgrade_upgrade_round_trips(make_database):
    url = make_database()
    migrate.upgrade(url)
    assert {"users", "jobs", "outbox", "workspaces", "hosts"} <= asyncio.run(_tables(url))
    migrate.downgrade(url)
    assert asyncio.run(_tables(url)) == {"alembic_version"}
    migrate.upgrade(url)
    assert "jobs" in asyncio.run(_tables(url))


def test_the_models_and_the_migrations_describe_the_same_schema(database_url):
    async def diff() -> list:
        eng = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
        try:
            async with eng.connect() as conn:
                return await conn.run_sync(
                    lambda sync: autogenerate.compare_metadata(
                        migration.MigrationContext.configure(sync, opts={"compare_type": True}), models.metadata
                    )
                )
        finally:
            await eng.dispose()

    assert asyncio.run(diff()) == []


@pytest.fixture
async def conn(database_url):
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _user(conn, name: str | None = None) -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO users (id, name, role, disabled) VALUES ($1, $2, 'user', false) RETURNING id",
        uuid.uuid4(),
        name or f"u{uuid.uuid4().hex[:8]}",
    )


async def _job(conn, **cols) -> uuid.UUID:
    cols.setdefault("id", uuid.uuid4())
    cols.setdefault("kind", "image_build")
    cols.setdefault("status", "queued")
    cols.setdefault("source", "api")
    names = ", ".join(cols)
    params = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    return await conn.fetchval(f"INSERT INTO jobs ({names}) VALUES ({params}) RETURNING id", *cols.values())


async def test_every_job_update_bumps_its_version(conn):
    job = await _job(conn)
    assert await conn.fetchval("SELECT version FROM jobs WHERE id = $1", job) == 1
    await conn.execute("UPDATE jobs SET reason = 'waiting' WHERE id = $1", job)
    await conn.execute("UPDATE jobs SET reason = 'still waiting', version = 1 WHERE id = $1", job)
    assert await conn.fetchval("SELECT version FROM jobs WHERE id = $1", job) == 3


async def test_every_job_change_writes_its_job_sync_message_in_the_same_transaction(conn):
    job = await _job(conn)
    async with conn.transaction():
        await conn.execute("UPDATE jobs SET status = 'running' WHERE id = $1", job)
        rows = await conn.fetch("SELECT kind, payload FROM outbox WHERE topic = 'job-sync' AND key = $1 ORDER BY id", str(job))
    assert [r["kind"] for r in rows] == ["job.upsert", "job.upsert"]
    import json

    last = json.loads(rows[-1]["payload"])
    assert last["version"] == 2 and last["job"]["status"] == "running"
    assert "payload" not in last["job"], "the command payload (may hold env secrets) must not be projected"

    tx = conn.transaction()
    await tx.start()
    await conn.execute("UPDATE jobs SET status = 'dispatched' WHERE id = $1", job)
    await tx.rollback()
    count = await conn.fetchval("SELECT count(*) FROM outbox WHERE key = $1", str(job))
    assert count == 2, "a rolled-back change leaves no message behind"


async def test_a_soft_deleted_job_is_projected_as_a_versioned_tombstone(conn):
    job = await _job(conn)
    await conn.execute("UPDATE jobs SET deleted_at = now() WHERE id = $1", job)
    row = await conn.fetchrow("SELECT kind, payload::json->>'version' AS v FROM outbox WHERE key = $1 ORDER BY id DESC LIMIT 1", str(job))
    assert (row["kind"], row["v"]) == ("job.delete", "2")


async def test_an_idempotency_key_names_at_most_one_job(conn):
    await _job(conn, idempotency_key="schedule:abc:2026-11-25T10:00")
    with pytest.raises(asyncpg.UniqueViolationError):
        await _job(conn, idempotency_key="schedule:abc:2026-11-25T10:00")


async def test_a_job_is_finished_exactly_when_its_status_is_final(conn):
    with pytest.raises(asyncpg.CheckViolationError, match="jobs_finished_iff_final"):
        await _job(conn, status="failed")
    with pytest.raises(asyncpg.CheckViolationError, match="jobs_finished_iff_final"):
        await conn.execute(
            "INSERT INTO jobs (id, kind, status, source, finished_at) VALUES ($1, 'image_build', 'running', 'api', now())", uuid.uuid4()
        )


async def test_an_unknown_status_is_rejected_by_the_enum(conn):
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await _job(conn, status="exploded")


async def test_an_image_has_exactly_one_build_source(conn):
    owner = await _user(conn)
    insert = "INSERT INTO images (id, name, owner_id, shared, dockerfile, git_url, build_args) VALUES ($1, $2, $3, false, $4, $5, '{}')"
    with pytest.raises(asyncpg.CheckViolationError, match="images_exactly_one_source"):
        await conn.execute(insert, uuid.uuid4(), "both", owner, "FROM x", "file:///repo")
    with pytest.raises(asyncpg.CheckViolationError, match="images_exactly_one_source"):
        await conn.execute(insert, uuid.uuid4(), "neither", owner, None, None)
    await conn.execute(insert, uuid.uuid4(), "one", owner, "FROM x", None)


async def test_a_workspace_must_belong_to_an_existing_user(conn):
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute(
            "INSERT INTO workspaces (id, owner_id, name, image_ref, cpus, memory_mb, disk_gb, desired_state, observed_state)"
            " VALUES ($1, $2, 'ws', 'img', 1, 512, 1, 'running', 'pending')",
            uuid.uuid4(),
            uuid.uuid4(),
        )


async def test_an_unplaced_workspace_can_only_be_pending(conn):
    owner = await _user(conn)
    with pytest.raises(asyncpg.CheckViolationError, match="workspaces_placed_or_pending"):
        await conn.execute(
            "INSERT INTO workspaces (id, owner_id, name, image_ref, cpus, memory_mb, disk_gb, desired_state, observed_state)"
            " VALUES ($1, $2, 'ws', 'img', 1, 512, 1, 'running', 'running')",
            uuid.uuid4(),
            owner,
        )


async def test_an_outbox_insert_wakes_listeners_only_when_it_commits(conn, database_url):
    listener = await asyncpg.connect(database_url)
    woke: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("a4c_outbox", lambda *args: woke.put_nowait(args[2]))
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("INSERT INTO outbox (topic, key, kind, payload) VALUES ('t', 'k', 'x', '{}')")
        await tx.rollback()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(woke.get(), 0.3)
        await conn.execute("INSERT INTO outbox (topic, key, kind, payload) VALUES ('t', 'k', 'x', '{}')")
        assert await asyncio.wait_for(woke.get(), 5) == "a4c_outbox"
    finally:
        await listener.close()
