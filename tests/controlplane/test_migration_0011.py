"""Migration 0011 (host allocations): a database that already holds workspaces gets each host's sums backfilled."""

from __future__ import annotations

import asyncio
import decimal
import uuid

from controlplane.db import migrate
from tests.controlplane import migration_sql

HOST_SQL = (
    "INSERT INTO hosts (id, name, status, signing_key, agent_version, capacity_cpus, capacity_memory_mb, capacity_disk_bytes)"
    " VALUES ($1, $2, 'active', 'k', 't', 16, 65536, 1000000000000)"
)
WS_SQL = (
    "INSERT INTO workspaces (id, owner_id, name, image_ref, host_id, desired_state, observed_state, cpus, memory_mb, disk_gb)"
    " VALUES ($1, $2, $3, 'debian', $4, $5, $6, $7, $8, $9)"
)


def test_existing_workspaces_are_summed_per_host_and_empty_hosts_get_a_zero_row(make_database):
    url = make_database()
    migrate.upgrade(url, "0010")
    owner, busy, empty = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    workspaces = [
        # desired, observed, cpus, memory, disk: what each holds on its host
        ("running", "running", "2", 4096, 20),  # all of it
        ("running", "creating", "1.5", 1024, 10),  # all, and its disk is promised
        ("stopped", "stopped", "4", 8192, 50),  # disk only: asked to stop
        ("running", "failed", "8", 9999, 99),  # nothing
        ("deleted", "deleted", "8", 9999, 99),  # nothing
        ("running", "lost", "0.5", 512, 5),  # all of it: lost is not gone
    ]
    asyncio.run(
        migration_sql.run(
            url,
            ("INSERT INTO users (id, name, role) VALUES ($1, 'owner', 'user')", owner),
            (HOST_SQL, busy, "busy"),
            (HOST_SQL, empty, "empty"),
            *[(WS_SQL, uuid.uuid4(), owner, f"w{i}", busy, *w[:2], decimal.Decimal(w[2]), *w[3:]) for i, w in enumerate(workspaces)],
        )
    )
    migrate.upgrade(url)
    [rows] = asyncio.run(migration_sql.run(url, ("SELECT host_id, cpus, memory_mb, disk_gb, promised_gb, workspaces FROM host_allocations",)))
    got = {r["host_id"]: tuple(r.values())[1:] for r in rows}
    assert got == {busy: (decimal.Decimal("4.00"), 5632, 85, 10, 4), empty: (0, 0, 0, 0, 0)}
    # From here on the trigger keeps it: a new host gets its row, a new workspace its share.
    other = uuid.uuid4()
    asyncio.run(
        migration_sql.run(
            url, (HOST_SQL, other, "later"), (WS_SQL, uuid.uuid4(), owner, "new", other, "running", "creating", decimal.Decimal(1), 256, 3)
        )
    )
    [[row]] = asyncio.run(
        migration_sql.run(url, ("SELECT cpus, memory_mb, disk_gb, promised_gb, workspaces FROM host_allocations WHERE host_id = $1", other))
    )
    assert tuple(row.values()) == (1, 256, 3, 3, 1)
