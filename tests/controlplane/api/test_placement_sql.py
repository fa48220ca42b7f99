"""The SQL-side placement (rank in PostgreSQL, decide on the top few) equals the pure decision over the whole fleet."""

from __future__ import annotations

import datetime
import decimal
import random
import typing
import uuid

import pytest
import sqlalchemy as sa

from controlplane.db import models
from controlplane.domain import placement as domain
from controlplane.services import placement
from tests.controlplane.api.conftest import settings_for

GIB = 1024**3
NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
FRESH = 60.0
# Names whose order differs between byte order and a locale's collation.
NAMES = ["a-host", "a_host", "B-host", "b.host", "Zeta", "zeta", "h10", "h9", "ünï", "AA", "aa"]


def random_fleet(rng: random.Random, size: int, healthy: bool) -> list[dict]:
    """A fleet with every kind of ineligible host; ``healthy``: nearly all eligible, so the top-N cut matters."""
    hosts: list[dict[str, typing.Any]] = []
    for i in range(size):
        total = rng.choice([None, 0, 100 * GIB, 500 * GIB, 1000 * GIB])
        hosts.append(
            {
                "id": uuid.UUID(int=rng.getrandbits(128)),
                "name": f"{rng.choice(NAMES)}-{i}" if rng.random() < 0.7 else rng.choice(NAMES) + str(i),
                "status": "active" if healthy else rng.choice(["active"] * 6 + ["down"]),
                "cordoned": not healthy and rng.random() < 0.1,
                "draining": not healthy and rng.random() < 0.05,
                "capacity_cpus": decimal.Decimal(rng.choice(["2", "4", "8", "0.5", "3.25"])),
                "capacity_memory_mb": rng.choice([1024, 4096, 8192]),
                "capacity_disk_bytes": rng.choice([0, 200 * GIB, 800 * GIB]),
                "disk_total_bytes": total,
                "disk_used_bytes": None if not healthy and rng.random() < 0.1 else rng.choice([0, 10 * GIB, 50 * GIB, 90 * GIB]),
                "last_heartbeat_at": NOW
                if healthy
                else rng.choice(
                    [
                        None,
                        NOW,
                        NOW - datetime.timedelta(seconds=FRESH),
                        NOW - datetime.timedelta(seconds=FRESH, microseconds=1),
                        NOW - datetime.timedelta(seconds=5),
                        NOW + datetime.timedelta(seconds=30),
                        NOW - datetime.timedelta(hours=3),
                    ]
                ),
            }
        )
    # Exact twins: equal disk fraction and free memory, so the host id decides.
    twin = dict(hosts[0], id=uuid.UUID(int=rng.getrandbits(128)), name=hosts[0]["name"] + "-twin")
    return [*hosts, twin]


async def insert(session, fleet: list[dict], rng: random.Random, owner: uuid.UUID) -> None:
    for h in fleet:
        session.add(models.Host(signing_key="k", agent_version="t", labels={}, **h))
    await session.flush()
    for _ in range(len(fleet) * 2):
        host = rng.choice(fleet)
        session.add(
            models.Workspace(
                id=uuid.uuid4(),
                owner_id=owner,
                name=f"w{uuid.uuid4().hex[:12]}",
                image_ref="debian",
                host_id=host["id"],
                observed_state=rng.choice(list(models.ObservedState)[1:]),  # every state but pending (placed ones)
                cpus=decimal.Decimal(rng.choice(["0.25", "0.5", "1", "1.5"])),
                memory_mb=rng.choice([256, 512, 1024]),
                disk_gb=rng.choice([1, 5, 20]),
            )
        )
    await session.flush()


@pytest.mark.parametrize("seed_value", range(15))
async def test_choosing_in_sql_gives_what_the_pure_function_gives_on_the_whole_fleet(seed, database_url, seed_value):
    rng = random.Random(seed_value)
    settings = settings_for(database_url, **{"placement.heartbeat_fresh": FRESH})
    owner = await seed.user()
    async with (
        seed.sessions() as session,
        session.begin(),
    ):
        for table in ("jobs", "workspaces", "hosts"):
            await session.execute(sa.text(f"DELETE FROM {table}"))
        healthy = seed_value % 3 == 0
        await insert(session, random_fleet(rng, 120 if healthy else rng.choice([5, 30, 60]), healthy), rng, owner.id)
        eligible_seen, searched_part = 0, False
        for _ in range(8):
            request = placement.Request(
                cpus=rng.choice([0.25, 0.5, 1.0, 2.0, 3.0]), memory_mb=rng.choice([128, 512, 2048, 6000]), disk_gb=rng.choice([1, 10, 100])
            )
            fast = await placement.choose(session, request, settings, now=NOW)
            everything = await placement.snapshot(session)
            need = domain.Request(request.cpus, request.memory_mb, request.disk_gb)
            full = domain.place(need, everything, NOW, settings.placement)
            # The choice and the ranking shown are the whole fleet's, even when the search stopped early.
            assert fast.host_id == full.host_id
            assert fast.record["eligible"] == full.to_record(limit=placement.RECORD_HOSTS)["eligible"]
            # The rest of the record is the pure decision's over the hosts examined, the whole fleet when nothing fits.
            up_to = fast.record["examined"]["disk_fraction_before_max"]
            assert up_to is None or full.host_id is not None, "a pending reason must count the whole fleet"
            examined = domain.place(need, everything, NOW, settings.placement, examined_up_to=up_to)
            expected = examined.to_record(limit=placement.RECORD_HOSTS)
            assert fast.record["rejected_counts"] == expected["rejected_counts"], (
                sorted(fast.record["rejected_counts"].items()),
                sorted(expected["rejected_counts"].items()),
            )
            assert fast.record == expected, (request, fast.reason, examined.reason)
            assert (fast.host_id, fast.reason) == (examined.host_id, examined.reason)
            searched_part = searched_part or (up_to is not None and len(examined.eligible) + len(examined.rejected) < len(everything))
            # A create ranks and claims in one statement: it takes the same host, for the same reason.
            claiming = await session.begin_nested()
            claimed = await placement.place_one(session, request, settings, now=NOW)
            await claiming.rollback()
            assert (claimed.host_id, claimed.record) == (full.host_id, expected)
            eligible_seen = max(eligible_seen, len(full.eligible))
        if healthy:
            assert eligible_seen > placement.RECORD_HOSTS, "a healthy fleet must exercise the top-N cut"
            assert searched_part, "a healthy fleet must exercise a search that stops before the end of the fleet"
        await session.rollback()
