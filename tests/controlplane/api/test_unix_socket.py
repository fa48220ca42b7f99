"""``database.url`` may name PostgreSQL's Unix socket (controlplane/settings.py), as a control plane on the
database's own machine would: the hot reads (controlplane/db/hot.py), the SQLAlchemy pools and the token
lookups all connect through it, and the API answers as it does over TCP."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.controlplane.api.conftest import Client
from tests.harness import postgres_server


async def test_the_api_reads_and_writes_through_postgresqls_unix_socket(start_api, http, seed, database_url) -> None:
    socket_url = postgres_server.unix_socket_url(database_url)
    if socket_url is None:
        pytest.skip("the test server has no Unix socket on this machine")
    me = Client(http, await start_api(**{"database.url": socket_url}), (await seed.user()).token)

    created = await me.post(
        "/v1/workspaces", {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1}
    )
    assert created.status == 202, created.body
    workspace, job = created.body["workspace"], created.body["job"]
    got = await me.get(f"/v1/workspaces/{workspace['id']}")
    assert got.status == 200 and got.body["id"] == workspace["id"] and got.body["version"] == workspace["version"]
    assert (await me.get(f"/v1/jobs/{job['id']}")).body["id"] == job["id"]
    assert [w["id"] for w in (await me.get("/v1/workspaces")).body["items"]] == [workspace["id"]]

    # A Unix-socket backend shows client_port -1; the test's own sessions come over TCP.
    async with seed.sessions() as session:
        on_socket = await session.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND client_port = -1"))
    assert on_socket >= 2  # at least the hot-read connection and a SQLAlchemy one
