"""A fetched batch of events applies like the same events one by one: host reports share a transaction, nothing else changes."""

from __future__ import annotations

import json
import time
import uuid

import asyncpg
import pytest

from controlplane.events import consumer
from shared import messages, signing

HEARTBEAT, DISK, INVENTORY = messages.EventKind.HEARTBEAT, messages.EventKind.DISK, messages.EventKind.INVENTORY


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def _host(db) -> tuple[uuid.UUID, str]:
    host_id, key = uuid.uuid4(), signing.new_key()
    await db.execute(
        "INSERT INTO hosts (id, name, status, signing_key, agent_version, capacity_cpus, capacity_memory_mb, capacity_disk_bytes)"
        " VALUES ($1, $2, 'down', $3, '', 4, 8192, 100000000000)",
        host_id,
        f"b-{host_id.hex[:8]}",
        key,
    )
    return host_id, key


def _event(kind, host, seq, payload, *, issued_at: float) -> bytes:
    host_id, key = host
    body = messages.Envelope(kind=kind.value, host_id=str(host_id), seq=seq, issued_at=issued_at, payload=payload.model_dump(mode="json"))
    return signing.sign(body.model_dump(mode="json"), key)


def _heartbeat(cpus: float) -> messages.Heartbeat:
    return messages.Heartbeat(agent_version="1", uptime_s=1, cpus=cpus, memory_mb=1024)


def _disk(used: int) -> messages.DiskReport:
    return messages.DiskReport(paths=[messages.PathUsage(path="/", total_bytes=1000, used_bytes=used, free_bytes=1000 - used, percent=used / 10)])


def _inventory(image: str) -> messages.Inventory:
    return messages.Inventory(containers=[], images=[messages.ImageInfo(image_id=image, tags=[])])


async def test_a_batch_of_reports_leaves_each_host_at_its_newest_report_even_when_an_older_one_comes_last(engine, db):
    a, b = await _host(db), await _host(db)
    now = time.time()
    batch = [
        _event(HEARTBEAT, a, 20, _heartbeat(8), issued_at=now),
        _event(DISK, a, 21, _disk(300), issued_at=now + 1),
        _event(INVENTORY, b, 5, _inventory("sha256:new"), issued_at=now + 2),
        _event(HEARTBEAT, a, 10, _heartbeat(2), issued_at=now - 5),  # older, replayed after the newer one
        _event(DISK, a, 9, _disk(100), issued_at=now - 5),
        _event(INVENTORY, b, 4, _inventory("sha256:old"), issued_at=now - 5),
        _event(HEARTBEAT, b, 7, _heartbeat(4), issued_at=now),
    ]
    kinds = await consumer.handle_batch(batch, engine, consumer.HostKeys(engine), batch_size=200)
    assert kinds == [HEARTBEAT, DISK, INVENTORY, HEARTBEAT, DISK, INVENTORY, HEARTBEAT]
    row_a = await db.fetchrow("SELECT status, capacity_cpus, last_event_seq, disk_used_bytes FROM hosts WHERE id = $1", a[0])
    assert (row_a["status"], float(row_a["capacity_cpus"]), row_a["last_event_seq"], row_a["disk_used_bytes"]) == ("active", 8.0, 20, 300)
    row_b = await db.fetchrow("SELECT status, last_event_seq, inventory FROM hosts WHERE id = $1", b[0])
    assert (row_b["status"], row_b["last_event_seq"]) == ("active", 7)
    assert json.loads(row_b["inventory"])["images"][0]["image_id"] == "sha256:new"


async def test_a_forged_event_inside_a_batch_is_rejected_and_the_rest_are_applied(engine, db):
    a, b = await _host(db), await _host(db)
    forged = _event(HEARTBEAT, (b[0], signing.new_key()), 50, _heartbeat(64), issued_at=time.time())
    before = consumer.REJECTED.labels("bad_signature")._value.get()
    kinds = await consumer.handle_batch(
        [_event(HEARTBEAT, a, 1, _heartbeat(2), issued_at=time.time()), forged, _event(HEARTBEAT, b, 2, _heartbeat(4), issued_at=time.time())],
        engine,
        consumer.HostKeys(engine, min_refresh=0),
    )
    assert kinds == [HEARTBEAT, None, HEARTBEAT]
    assert consumer.REJECTED.labels("bad_signature")._value.get() == before + 1
    row_b = await db.fetchrow("SELECT capacity_cpus, last_event_seq FROM hosts WHERE id = $1", b[0])
    assert (float(row_b["capacity_cpus"]), row_b["last_event_seq"]) == (4.0, 2), "the forged heartbeat changed nothing"


async def test_a_job_result_between_reports_is_applied_in_its_place(engine, db):
    host = await _host(db)
    job_id = uuid.uuid4()
    await db.execute("INSERT INTO jobs (id, kind, status, source, host_id) VALUES ($1, 'host_cleanup', 'dispatched', 'api', $2)", job_id, host[0])
    now = time.time()
    batch = [
        _event(HEARTBEAT, host, 1, _heartbeat(2), issued_at=now),
        _event(messages.EventKind.JOB_RESULT, host, 2, messages.JobResult(job_id=str(job_id), ok=False, error="disk full"), issued_at=now),
        _event(HEARTBEAT, host, 3, _heartbeat(6), issued_at=now),
    ]
    # batch_size 1: every report is its own transaction too, so the small-batch path is covered as well.
    kinds = await consumer.handle_batch(batch, engine, consumer.HostKeys(engine), batch_size=1)
    assert kinds == [HEARTBEAT, messages.EventKind.JOB_RESULT, HEARTBEAT]
    job = await db.fetchrow("SELECT status, error FROM jobs WHERE id = $1", job_id)
    assert (job["status"], job["error"]) == ("failed", "disk full")
    assert float(await db.fetchval("SELECT capacity_cpus FROM hosts WHERE id = $1", host[0])) == 6.0


async def test_the_first_key_lookup_loads_every_hosts_key_at_once(engine, db):
    hosts = [await _host(db) for _ in range(3)]
    keys = consumer.HostKeys(engine)
    assert await keys.get(str(hosts[0][0])) == hosts[0][1]
    await db.execute("UPDATE hosts SET signing_key = 'changed' WHERE id = ANY($1::uuid[])", [h[0] for h in hosts])
    # Served from the cache filled by the first lookup: no query per host.
    assert [await keys.get(str(h[0])) for h in hosts[1:]] == [h[1] for h in hosts[1:]]
