"""The reconciler loop against real PostgreSQL: overdue jobs retry with backoff then fail with a reason; silent hosts go down."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import uuid

import asyncpg
import prometheus_client
import pytest
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import reconciler
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from tests.harness import wait


@pytest.fixture
async def sessions(database_url):
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    yield db_engine.sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def _host(db, *, heartbeat_age: float = 0.0) -> uuid.UUID:
    host_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO hosts (id, name, status, cordoned, draining, labels, signing_key, agent_version, capacity_cpus,"
        " capacity_memory_mb, capacity_disk_bytes, last_event_seq, version, last_heartbeat_at)"
        " VALUES ($1, $2, 'active', false, false, '{}', 'k', '', 4, 8192, 1000000000, 0, 1, now() - make_interval(secs => $3))",
        host_id,
        f"h-{host_id.hex[:8]}",
        heartbeat_age,
    )
    return host_id


async def _overdue_job(db, host_id, attempts: int) -> uuid.UUID:
    job_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO jobs (id, kind, status, source, host_id, host_name, attempts, max_attempts, dispatched_at, acknowledged_at,"
        " deadline_at, reason, payload)"
        " VALUES ($1, 'host_cleanup', 'running', 'api', $2, 'h', $3, 3, now() - interval '1 hour', now() - interval '1 hour',"
        " now() - interval '5 minutes', 'pruning: build cache', '{}')",
        job_id,
        host_id,
        attempts,
    )
    return job_id


SETTINGS = cp_settings.load(environ={}, **{"reconciler.job_ack_timeout": 10, "reconciler.host_down_after": 60})


async def test_an_overdue_job_is_retried_later_with_backoff_and_says_why(sessions, db):
    host = await _host(db)
    job = await _overdue_job(db, host, attempts=2)
    report = await reconciler.reconcile_once(sessions, SETTINGS, reconciler.State())
    assert report.overdue == 1
    row = await db.fetchrow("SELECT status::text, next_attempt_at - now() AS wait, reason FROM jobs WHERE id = $1", job)
    assert row["status"] == "queued"
    assert datetime.timedelta(seconds=15) < row["wait"] <= datetime.timedelta(seconds=20), "2nd retry waits 2 x ack timeout"
    assert "overdue by" in row["reason"] and "pruning: build cache" in row["reason"] and "retry 3 of 3" in row["reason"]


async def test_an_overdue_job_out_of_attempts_fails_with_a_reason_a_person_can_act_on(sessions, db):
    host = await _host(db)
    job = await _overdue_job(db, host, attempts=3)
    await reconciler.reconcile_once(sessions, SETTINGS, reconciler.State())
    row = await db.fetchrow("SELECT status::text, error, finished_at FROM jobs WHERE id = $1", job)
    assert row["status"] == "failed" and row["finished_at"] is not None
    assert "after 3 attempts" in row["error"] and "journalctl -u a4c-agent" in row["error"]


async def test_a_silent_host_goes_down_and_its_waiting_jobs_say_so(sessions, db):
    host = await _host(db, heartbeat_age=120)
    job_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO jobs (id, kind, status, source, host_id, dispatched_at, payload) VALUES ($1, 'host_cleanup', 'dispatched', 'api', $2, now(), '{}')",
        job_id,
        host,
    )
    report = await reconciler.reconcile_once(sessions, SETTINGS, reconciler.State())
    assert report.hosts_down == [f"h-{host.hex[:8]}"]
    assert await db.fetchval("SELECT status::text FROM hosts WHERE id = $1", host) == "down"
    assert "is offline" in await db.fetchval("SELECT reason FROM jobs WHERE id = $1", job_id)


async def _host_with_an_orphan(db) -> tuple[uuid.UUID, str]:
    """A live host whose latest inventory shows an a4c container of a workspace the database does not know."""
    host = await _host(db)
    container = f"c-orphan-{uuid.uuid4().hex[:8]}"
    inventory = {
        "containers": [
            {"container_id": container, "workspace_id": str(uuid.uuid4()), "name": "a4c-ws-gone", "image": "debian:12", "state": "running"}
        ],
        "images": [],
    }
    await db.execute("UPDATE hosts SET inventory = $2::jsonb, inventory_at = now() WHERE id = $1", host, json.dumps(inventory))
    return host, container


def _loop_settings(*, report_only: bool) -> cp_settings.Settings:
    # A short grace that the loop's own first-seen memory must carry it across passes.
    return cp_settings.load(
        environ={},
        **{"reconciler.interval": 0.2, "reconciler.orphan_grace": 0.5, "reconciler.report_only": report_only, "reconciler.host_down_after": 60},
    )


async def _removals(db, host: uuid.UUID) -> list[str]:
    """What was done about the host: jobs, and commands sent to it."""
    jobs = await db.fetch("SELECT kind::text FROM jobs WHERE host_id = $1", host)
    sent = await db.fetch("SELECT kind FROM outbox WHERE topic = $1", f"commands.{host}")
    return [r["kind"] for r in jobs] + [r["kind"] for r in sent]


def _reported_removals() -> float:
    return prometheus_client.REGISTRY.get_sample_value("a4c_reconciler_actions_total", {"action": "RemoveContainer", "mode": "report"}) or 0.0


async def test_in_report_only_mode_the_running_loop_reports_an_orphan_container_and_never_removes_it(sessions, db, caplog):
    host, container = await _host_with_an_orphan(db)
    name = await db.fetchval("SELECT name FROM hosts WHERE id = $1", host)
    reported_before = _reported_removals()
    caplog.set_level(logging.INFO, logger="controlplane.reconciler")
    stopping = asyncio.Event()
    loop = asyncio.create_task(reconciler.run(sessions, _loop_settings(report_only=True), stopping=stopping))
    try:

        def reported_twice() -> bool:
            lines = [r.getMessage() for r in caplog.records if "(report-only)" in r.getMessage() and container in r.getMessage()]
            return len(lines) >= 2 and all(f"on {name} would: RemoveContainer" in line for line in lines)

        # Twice: past its grace, pass after pass, it is only ever reported.
        await wait.eventually(reported_twice, timeout=15, message="the orphan reported on two passes")
    finally:
        stopping.set()
        await asyncio.wait_for(loop, 10)
    reports = [r for r in caplog.records if "would: RemoveContainer" in r.getMessage() and container in r.getMessage()]
    assert _reported_removals() == reported_before + len(reports), "each pass's report counted as reported, not as done"
    assert await _removals(db, host) == [], "no removal job and no command: the container is left running"


async def test_out_of_report_only_mode_the_running_loop_removes_the_same_orphan_once_its_grace_has_passed(sessions, db):
    host, container = await _host_with_an_orphan(db)
    stopping = asyncio.Event()
    loop = asyncio.create_task(reconciler.run(sessions, _loop_settings(report_only=False), stopping=stopping))
    try:

        async def removing() -> list[str]:
            return await _removals(db, host)

        assert await wait.eventually(removing, timeout=15, message="a removal issued") == ["workspace_delete", "workspace.delete"]
    finally:
        stopping.set()
        await asyncio.wait_for(loop, 10)
    reason = await db.fetchval("SELECT reason FROM jobs WHERE host_id = $1", host)
    assert reason.startswith(f"orphan: container {container}")
