"""Agent events apply idempotently: a replayed or older event never overwrites newer state."""

from __future__ import annotations

import datetime
import json
import time
import uuid

import asyncpg
import pytest

from controlplane.events import consumer
from shared import messages, signing


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def host(db):
    host_id = uuid.uuid4()
    key = signing.new_key()
    await db.execute(
        "INSERT INTO hosts (id, name, status, cordoned, draining, labels, signing_key, agent_version, capacity_cpus,"
        " capacity_memory_mb, capacity_disk_bytes, last_event_seq, version)"
        " VALUES ($1, $2, 'down', false, false, '{}', $3, '', 4, 8192, 100000000000, 0, 1)",
        host_id,
        f"h-{host_id.hex[:8]}",
        key,
    )
    return host_id, key


async def _job(db, host_id, kind="image_build", status="dispatched", workspace_id=None) -> uuid.UUID:
    job_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO jobs (id, kind, status, source, host_id, workspace_id) VALUES ($1, $2, $3, 'api', $4, $5)",
        job_id,
        kind,
        status,
        host_id,
        workspace_id,
    )
    return job_id


def _raw(kind, host_id, seq, payload, key) -> bytes:
    return messages.encode(kind, str(host_id), seq, payload, key)


async def test_a_heartbeat_marks_a_down_host_active_and_records_its_capacity(engine, db, host):
    host_id, key = host
    hb = messages.Heartbeat(agent_version="1.2", uptime_s=3, cpus=16, memory_mb=65536, labels={"rack": "r1"})
    assert (
        await consumer.handle(_raw(messages.EventKind.HEARTBEAT, host_id, 10, hb, key), engine, consumer.HostKeys(engine))
        is messages.EventKind.HEARTBEAT
    )
    row = await db.fetchrow("SELECT status, capacity_memory_mb, labels, last_heartbeat_at FROM hosts WHERE id = $1", host_id)
    assert row["status"] == "active" and row["capacity_memory_mb"] == 65536 and row["last_heartbeat_at"] is not None
    assert json.loads(row["labels"]) == {"rack": "r1"}


async def test_a_skewed_agents_reports_are_stamped_on_receipt_and_an_older_heartbeat_still_says_it_is_alive(engine, db, host):
    host_id, key = host
    keys = consumer.HostKeys(engine)
    hb = messages.Heartbeat(agent_version="1.2", uptime_s=3, cpus=16, memory_mb=65536, labels={})
    await consumer.handle(_raw(messages.EventKind.HEARTBEAT, host_id, 100, hb, key), engine, keys)
    await db.execute("UPDATE hosts SET last_heartbeat_at = now() - interval '1 hour', status = 'down' WHERE id = $1", host_id)
    # Versions that went back (an agent restarted with its clock set back): the host is alive all the same ...
    older = messages.Heartbeat(agent_version="0.9", uptime_s=1, cpus=2, memory_mb=1024, labels={})
    await consumer.handle(_raw(messages.EventKind.HEARTBEAT, host_id, 50, older, key), engine, keys)
    row = await db.fetchrow("SELECT status::text, agent_version, now() - last_heartbeat_at AS age FROM hosts WHERE id = $1", host_id)
    assert row["status"] == "active" and row["age"] < datetime.timedelta(seconds=5)
    assert row["agent_version"] == "1.2", "only the payload of an older heartbeat is refused"
    # ... and an inventory issued 240 s behind the control plane's clock is stamped when it was applied.
    env = messages.Envelope(
        kind=messages.EventKind.INVENTORY.value,
        host_id=str(host_id),
        seq=101,
        issued_at=time.time() - 240,
        payload=messages.Inventory(containers=[], images=[]).model_dump(mode="json"),
    )
    await consumer.handle(signing.sign(env.model_dump(mode="json"), key), engine, keys)
    age = await db.fetchval("SELECT now() - inventory_at FROM hosts WHERE id = $1", host_id)
    assert age < datetime.timedelta(seconds=5)


async def test_a_log_batch_delivered_twice_appears_once(engine, db, host):
    host_id, key = host
    job = await _job(db, host_id)
    keys = consumer.HostKeys(engine)
    raw = _raw(messages.EventKind.JOB_LOG, host_id, 5, messages.JobLog(job_id=str(job), lines=["step 1", "step 2"]), key)
    await consumer.handle(raw, engine, keys)
    await consumer.handle(raw, engine, keys)
    assert await db.fetchval("SELECT log_tail FROM jobs WHERE id = $1", job) == "step 1\nstep 2\n"


async def test_an_older_result_after_a_newer_one_changes_nothing(engine, db, host):
    host_id, key = host
    job = await _job(db, host_id)
    keys = consumer.HostKeys(engine)
    failed = messages.JobResult(job_id=str(job), ok=False, error="ERROR: failed to solve: no space left on device")
    late_progress = messages.JobProgress(job_id=str(job), phase="building")
    await consumer.handle(_raw(messages.EventKind.JOB_RESULT, host_id, 20, failed, key), engine, keys)
    await consumer.handle(_raw(messages.EventKind.JOB_PROGRESS, host_id, 19, late_progress, key), engine, keys)
    row = await db.fetchrow("SELECT status, error, finished_at FROM jobs WHERE id = $1", job)
    assert row["status"] == "failed" and "no space left" in row["error"] and row["finished_at"] is not None


async def test_a_successful_build_records_the_image_on_its_host(engine, db, host):
    host_id, key = host
    owner = await db.fetchval("INSERT INTO users (id, name, role, disabled) VALUES ($1, 'alice', 'user', false) RETURNING id", uuid.uuid4())
    image = await db.fetchval(
        "INSERT INTO images (id, name, owner_id, shared, dockerfile, build_args) VALUES ($1, 'base', $2, false, 'FROM x', '{}') RETURNING id",
        uuid.uuid4(),
        owner,
    )
    job = uuid.uuid4()
    await db.execute(
        "INSERT INTO jobs (id, kind, status, source, host_id, image_id) VALUES ($1, 'image_build', 'running', 'api', $2, $3)", job, host_id, image
    )
    result = messages.JobResult(job_id=str(job), ok=True, result={"image_id": "sha256:abc", "digest": "sha256:abc", "tag": "a4c/base:1"})
    await consumer.handle(_raw(messages.EventKind.JOB_RESULT, host_id, 3, result, key), engine, consumer.HostKeys(engine))
    assert await db.fetchval("SELECT docker_image_id FROM host_images WHERE host_id = $1 AND image_id = $2", host_id, image) == "sha256:abc"
    assert await db.fetchval("SELECT latest_digest FROM images WHERE id = $1", image) == "sha256:abc"


async def test_an_older_workspace_state_never_overwrites_a_newer_one(engine, db, host):
    host_id, key = host
    owner = await db.fetchval("INSERT INTO users (id, name, role, disabled) VALUES ($1, 'bob', 'user', false) RETURNING id", uuid.uuid4())
    ws = uuid.uuid4()
    await db.execute(
        "INSERT INTO workspaces (id, owner_id, name, image_ref, host_id, cpus, memory_mb, disk_gb, desired_state, observed_state)"
        " VALUES ($1, $2, 'dev', 'img', $3, 1, 512, 1, 'running', 'creating')",
        ws,
        owner,
        host_id,
    )
    keys = consumer.HostKeys(engine)
    running = messages.WorkspaceState(
        workspace_id=str(ws),
        state="running",
        container_id="c1",
        ports=[messages.PublishedPort(container_port=22, host_ip="127.0.0.1", host_port=32001)],
    )
    exited = messages.WorkspaceState(workspace_id=str(ws), state="exited", container_id="c1", exit_code=137)
    await consumer.handle(_raw(messages.EventKind.WORKSPACE_STATE, host_id, 200, exited, key), engine, keys)
    await consumer.handle(_raw(messages.EventKind.WORKSPACE_STATE, host_id, 100, running, key), engine, keys)
    assert await db.fetchval("SELECT observed_state::text FROM workspaces WHERE id = $1", ws) == "exited"


@pytest.mark.parametrize("forgery", ["wrong key", "unknown host", "tampered", "not json", "unsigned"])
async def test_a_forged_event_is_rejected_counted_and_not_applied(engine, db, host, forgery):
    host_id, key = host
    job = await _job(db, host_id)
    result = messages.JobResult(job_id=str(job), ok=True)
    raw = {
        "wrong key": lambda: _raw(messages.EventKind.JOB_RESULT, host_id, 1, result, signing.new_key()),
        "unknown host": lambda: _raw(messages.EventKind.JOB_RESULT, uuid.uuid4(), 1, result, key),
        "tampered": lambda: _raw(messages.EventKind.JOB_RESULT, host_id, 1, result, key).replace(b'"ok":true', b'"ok":false'),
        "not json": lambda: b"\x00garbage",
        "unsigned": lambda: json.dumps({"host_id": str(host_id), "kind": "job.result", "seq": 1, "payload": {}}).encode(),
    }[forgery]()
    reason = {
        "wrong key": "bad_signature",
        "unknown host": "unknown_host",
        "tampered": "bad_signature",
        "not json": "malformed",
        "unsigned": "bad_signature",
    }[forgery]
    before = consumer.REJECTED.labels(reason)._value.get()
    assert await consumer.handle(raw, engine, consumer.HostKeys(engine, min_refresh=0)) is None
    assert consumer.REJECTED.labels(reason)._value.get() == before + 1
    assert await db.fetchval("SELECT status::text FROM jobs WHERE id = $1", job) == "dispatched"
