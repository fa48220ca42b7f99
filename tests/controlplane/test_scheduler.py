"""Cron schedules fire exactly once per slot across control-plane instances, and misfires follow the policy."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import asyncpg
import pytest
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import scheduler
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from tests.harness import wait

T0 = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)


@pytest.fixture
async def sessions(database_url):
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    yield db_engine.sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def schedule(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        owner = await conn.fetchval(
            "INSERT INTO users (id, name, role, disabled) VALUES ($1, $2, 'user', false) RETURNING id", uuid.uuid4(), f"u{uuid.uuid4().hex[:6]}"
        )
        await conn.execute(
            "INSERT INTO hosts (id, name, status, cordoned, draining, labels, signing_key, agent_version, capacity_cpus,"
            " capacity_memory_mb, capacity_disk_bytes, last_event_seq, version, last_heartbeat_at,"
            " disk_total_bytes, disk_used_bytes, disk_reported_at)"
            " VALUES ($1, $2, 'active', false, false, '{}', 'k', '', 4, 8192, 1000000000, 0, 1, now() + interval '1 day',"
            " 1000000000, 100, now())",
            uuid.uuid4(),
            f"h{uuid.uuid4().hex[:6]}",
        )
        image = await conn.fetchval(
            "INSERT INTO images (id, name, owner_id, shared, dockerfile, build_args) VALUES ($1, $2, $3, false, 'FROM scratch', '{}') RETURNING id",
            uuid.uuid4(),
            f"img{uuid.uuid4().hex[:6]}",
            owner,
        )
        sched = await conn.fetchval(
            "INSERT INTO schedules (id, image_id, owner_id, cron, timezone, enabled, next_run_at) VALUES ($1, $2, $3, '* * * * *', 'UTC', true, $4) RETURNING id",
            uuid.uuid4(),
            image,
            owner,
            T0,
        )
        yield sched, image
    finally:
        await conn.close()


async def _build_jobs(database_url, image) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT idempotency_key FROM jobs WHERE image_id = $1 AND kind = 'image_build' AND source = 'schedule' ORDER BY created_at", image
        )
        return [r["idempotency_key"] for r in rows]
    finally:
        await conn.close()


async def test_two_instances_ticking_for_three_minutes_fire_each_slot_exactly_once(sessions, database_url, schedule):
    sched, image = schedule
    settings = cp_settings.load(environ={}, **{"scheduler.tick": 5})
    other_engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    other = db_engine.sessionmaker(other_engine)
    try:
        # Both instances tick every 5 s of simulated time across minutes 10:00–10:02.
        for second in range(0, 180, 5):
            now = T0 + datetime.timedelta(seconds=second)
            await asyncio.gather(scheduler.fire_due(sessions, settings, now=now), scheduler.fire_due(other, settings, now=now))
            await _finish_builds(database_url, image)  # each build ends before the next slot (else it coalesces)
    finally:
        await other_engine.dispose()
    keys = await _build_jobs(database_url, image)
    slots = sorted({k.split("/")[0] for k in keys})
    assert slots == [f"schedule:{sched}:{(T0 + datetime.timedelta(minutes=m)).isoformat()}" for m in range(3)]
    assert len(keys) == len(slots), "one build job per slot"


async def _finish_builds(database_url, image) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE image_id = $1 AND status <> 'succeeded'", image)
    finally:
        await conn.close()


async def _schedule_row(database_url, sched) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT last_job_id, last_outcome, last_run_at FROM schedules WHERE id = $1", sched)
    finally:
        await conn.close()


async def test_a_slot_firing_while_the_images_build_is_queued_or_running_joins_it_instead_of_adding_a_job(sessions, database_url, schedule):
    sched, image = schedule
    settings = cp_settings.load(environ={}, **{"scheduler.tick": 5})
    first = await scheduler.fire_due(sessions, settings, now=T0)
    assert [k for k in first if k.startswith(f"schedule:{sched}:")], first
    [job] = await _build_jobs(database_url, image)
    row = await _schedule_row(database_url, sched)
    assert row["last_outcome"] == f"requested build job {row['last_job_id']}"
    # The next two slots come while that build is still dispatched (its agent never answered): no new job.
    for minute in (1, 2):
        fired = await scheduler.fire_due(sessions, settings, now=T0 + datetime.timedelta(minutes=minute))
        assert [k for k in fired if k.startswith(f"schedule:{sched}:")] == []
        assert await _build_jobs(database_url, image) == [job]
        later = await _schedule_row(database_url, sched)
        assert later["last_job_id"] == row["last_job_id"] and later["last_run_at"] > row["last_run_at"]
        assert later["last_outcome"].startswith(f"coalesced into build job {row['last_job_id']}, dispatched"), later["last_outcome"]
    # Once it has ended, the next slot builds again.
    await _finish_builds(database_url, image)
    await scheduler.fire_due(sessions, settings, now=T0 + datetime.timedelta(minutes=3))
    assert len(await _build_jobs(database_url, image)) == 2


@pytest.mark.parametrize(("policy", "expected"), [("run_once", 1), ("skip", 0)])
async def test_slots_missed_during_downtime_follow_the_misfire_policy(sessions, database_url, schedule, policy, expected):
    sched, image = schedule
    settings = cp_settings.load(environ={}, **{"scheduler.misfire": policy})
    fired = await scheduler.fire_due(sessions, settings, now=T0 + datetime.timedelta(hours=3))
    fired = [k for k in fired if k.startswith(f"schedule:{sched}:")]
    assert len(fired) == expected
    assert len(await _build_jobs(database_url, image)) == expected
    # And the schedule moved on from "now", not slot by slot through the gap.
    again = await scheduler.fire_due(sessions, settings, now=T0 + datetime.timedelta(hours=3, seconds=1))
    assert [k for k in again if k.startswith(f"schedule:{sched}:")] == []


async def test_the_tick_loop_fires_a_due_schedule_and_ends_promptly_when_told_to_stop(sessions, database_url, schedule):
    _sched, image = schedule
    settings = cp_settings.load(environ={}, **{"scheduler.tick": 0.2, "scheduler.misfire": "run_once"})
    stopping = asyncio.Event()
    ticking = asyncio.create_task(scheduler.run(sessions, settings, stopping=stopping))
    try:
        # The slot (T0) is long past: run_once makes exactly one catch-up build, on the first tick.
        assert len(await wait.eventually(lambda: _build_jobs(database_url, image), message="a build from the tick loop")) == 1
    finally:
        stopping.set()
        await asyncio.wait_for(ticking, timeout=2)
    assert ticking.result() is None
    assert len(await _build_jobs(database_url, image)) == 1, "the schedule moved on from now: no second build"
