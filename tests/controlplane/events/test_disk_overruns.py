"""A workspace a disk report shows over its disk reservation is announced once: a WARNING and a count, not again while it stays over."""

from __future__ import annotations

import logging
import uuid

import asyncpg
import pytest

from controlplane import metrics
from controlplane.events import consumer
from shared import messages, signing

GiB = 1024**3
DISK = messages.EventKind.DISK


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def _setup(db) -> tuple[uuid.UUID, str, str, uuid.UUID, uuid.UUID]:
    host_id, key = uuid.uuid4(), signing.new_key()
    host_name = f"o-{host_id.hex[:8]}"
    await db.execute(
        "INSERT INTO hosts (id, name, status, signing_key, agent_version, capacity_cpus, capacity_memory_mb, capacity_disk_bytes)"
        " VALUES ($1, $2, 'active', $3, '', 4, 8192, 100000000000)",
        host_id,
        host_name,
        key,
    )
    owner = await db.fetchval(
        "INSERT INTO users (id, name, role, disabled) VALUES ($1, $2, 'user', false) RETURNING id", uuid.uuid4(), f"u{host_id.hex[:8]}"
    )
    big, small = uuid.uuid4(), uuid.uuid4()
    for ws, name, gb in ((big, "big", 1), (small, "small", 2)):
        await db.execute(
            "INSERT INTO workspaces (id, owner_id, name, image_ref, host_id, cpus, memory_mb, disk_gb, desired_state, observed_state)"
            " VALUES ($1, $2, $3, 'img', $4, 1, 512, $5, 'running', 'running')",
            ws,
            owner,
            name,
            host_id,
            gb,
        )
    return host_id, key, host_name, big, small


def _report(workspaces: dict[str, int]) -> messages.DiskReport:
    return messages.DiskReport(
        paths=[messages.PathUsage(path="/", total_bytes=100 * GiB, used_bytes=10 * GiB, free_bytes=90 * GiB, percent=10.0)],
        workspaces=workspaces,
    )


def _overruns() -> float:
    return metrics.DISK_OVERRUNS._value.get()


async def test_a_workspace_newly_over_its_reservation_is_logged_and_counted_once(engine, db, caplog) -> None:
    host_id, key, host_name, big, small = await _setup(db)
    keys = consumer.HostKeys(engine)
    caplog.set_level(logging.WARNING, logger="controlplane.events.apply")

    async def send(seq: int, workspaces: dict[str, int]) -> list[str]:
        caplog.clear()
        raw = messages.encode(DISK, str(host_id), seq, _report(workspaces), key)
        assert await consumer.handle(raw, engine, keys) is DISK
        return [r.getMessage() for r in caplog.records if "over its reservation" in r.getMessage()]

    before = _overruns()
    # Under: nothing. Another host's id, a non-UUID id (an agent's own test containers) and an unknown workspace are ignored.
    assert await send(10, {str(big): GiB // 2, str(small): GiB, "not-a-uuid": 50 * GiB, str(uuid.uuid4()): 50 * GiB}) == []
    said = await send(20, {str(big): GiB + 1, str(small): GiB})
    assert said == [f"workspace big ({big}) on host {host_name} uses {GiB + 1} bytes of disk, over its reservation of {GiB} bytes"]
    assert _overruns() == before + 1
    # Still over: not again. Its event replayed (an older seq): not again either.
    assert await send(30, {str(big): 2 * GiB, str(small): GiB}) == []
    assert await send(20, {str(big): GiB + 1, str(small): GiB}) == []
    assert _overruns() == before + 1
    # Back under, then over again: a new crossing, announced again.
    assert await send(40, {str(big): GiB, str(small): GiB}) == []
    assert len(await send(50, {str(big): 3 * GiB, str(small): 3 * GiB})) == 2
    assert _overruns() == before + 3


async def test_reports_applied_as_one_batch_compare_each_with_the_one_before(engine, db, caplog) -> None:
    host_id, key, _, big, _ = await _setup(db)
    caplog.set_level(logging.WARNING, logger="controlplane.events.apply")
    before = _overruns()
    raws = [messages.encode(DISK, str(host_id), seq, _report({str(big): used}), key) for seq, used in ((1, 2 * GiB), (2, 2 * GiB), (3, 3 * GiB))]
    assert await consumer.handle_batch(raws, engine, consumer.HostKeys(engine)) == [DISK] * 3
    assert _overruns() == before + 1
    stored = await db.fetchval("SELECT disk_report -> 'workspaces' ->> $2 FROM hosts WHERE id = $1", host_id, str(big))
    assert int(stored) == 3 * GiB
