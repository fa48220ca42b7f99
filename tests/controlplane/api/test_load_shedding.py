"""The server sheds load, against the real database and real sockets.

* a flood of unknown tokens is refused (429) before it costs lookups, and
  another client's request still succeeds; unknown tokens never evict known ones;
* slowloris: connections that never finish their request head are closed
  after ``http.header_timeout`` while normal requests go on; connection caps;
* a full route class answers 503 with Retry-After (its handlers held honestly
  on a PostgreSQL lock), other classes still answer;
* a client that disconnects cancels its create: no workspace appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import typing
import uuid

import prometheus_client
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import engine as db_engine
from controlplane.db import models
from tests.controlplane.api.conftest import Client
from tests.harness import wait


def sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def workspace(name: str | None = None) -> dict:
    return {"name": name or f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1}


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (EOF or reset)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(reader.read(65536), 30):
            received += chunk
    return received


@contextlib.asynccontextmanager
async def holding(database_url: str, statement: str, **params: typing.Any) -> typing.AsyncIterator[None]:
    """Hold what ``statement`` takes (a table lock, the placement lock) in an open transaction for the block."""
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(sa.text(statement), params)
            try:
                yield
            finally:
                await transaction.rollback()
    finally:
        await engine.dispose()


async def test_an_unknown_token_flood_is_refused_before_lookups_and_others_still_get_in(start_api, http, seed):
    base = await start_api(
        **{
            "rate_limit.trust_forwarded_for": True,
            "rate_limit.lookups_per_address_rps": 0.001,
            "rate_limit.lookups_per_address_burst": 10,
        }
    )
    victim = await seed.user()
    before = sample("a4c_auth_lookups_total", result="unknown")
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    flood = await asyncio.gather(*(Client(http, base, f"a4c_{secrets.token_hex(16)}").get("/v1/me", headers=attacker) for _ in range(200)))
    statuses = [a.status for a in flood]
    assert set(statuses) == {401, 429} and statuses.count(401) <= 10, statuses
    assert all(a.headers.get("Retry-After", "").isdigit() for a in flood if a.status == 429)
    assert sample("a4c_auth_lookups_total", result="unknown") - before <= 10
    # Another address has its own budget: its first (uncached) token is looked up and works.
    me = await Client(http, base, victim.token).get("/v1/me", headers={"X-Forwarded-For": "198.51.100.7"})
    assert me.status == 200 and me.body["name"] == victim.name


async def test_a_known_token_is_rechecked_even_when_its_address_has_spent_its_lookups(start_api, http, seed):
    base = await start_api(**{"auth.cache_ttl": 0.2, "rate_limit.lookups_per_address_rps": 0.001, "rate_limit.lookups_per_address_burst": 1})
    me = Client(http, base, (await seed.user()).token)
    assert (await me.get("/v1/me")).status == 200  # the address's one lookup
    refused = await Client(http, base, f"a4c_{secrets.token_hex(16)}").get("/v1/me")
    assert refused.status == 429 and refused.headers["Retry-After"].isdigit()
    known = sample("a4c_auth_lookups_total", result="known")

    async def rechecked() -> bool:
        assert (await me.get("/v1/me")).status == 200
        return sample("a4c_auth_lookups_total", result="known") > known

    await wait.eventually(rechecked, message="the expired entry looked up again, uncharged, and still 200")


async def test_the_same_unknown_token_is_looked_up_once(start_api, http):
    base = await start_api(**{"auth.cache_ttl": 60})
    stranger = Client(http, base, f"a4c_{secrets.token_hex(16)}")
    before = sample("a4c_auth_lookups_total", result="unknown")
    for _ in range(20):
        assert (await stranger.get("/v1/me")).status == 401
    assert sample("a4c_auth_lookups_total", result="unknown") - before == 1


async def test_unknown_tokens_filling_the_cache_never_evict_a_valid_one(start_api, http, seed):
    base = await start_api(**{"auth.cache_ttl": 60, "auth.cache_size": 5})
    user = await seed.user()
    me = Client(http, base, user.token)
    assert (await me.get("/v1/me")).status == 200
    known = sample("a4c_auth_lookups_total", result="known")
    for _ in range(50):
        assert (await Client(http, base, f"a4c_{secrets.token_hex(16)}").get("/v1/me")).status == 401
    assert (await me.get("/v1/me")).status == 200
    assert sample("a4c_auth_lookups_total", result="known") == known  # answered from the cache


async def test_slowloris_connections_are_closed_after_the_header_timeout(start_api, http):
    base = await start_api(**{"http.header_timeout": 1})
    connections = [await asyncio.open_connection("127.0.0.1", port_of(base)) for _ in range(50)]
    for _, writer in connections:
        writer.write(b"GET /v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    # One of them keeps trickling a byte at a time: bytes arriving do not extend the deadline.
    trickler = connections[0][1]

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            while not trickler.is_closing():
                trickler.write(b"a")
                await asyncio.sleep(0.1)

    task = asyncio.create_task(trickle())
    try:
        assert (await Client(http, base).get("/healthz")).status == 200  # the server still answers meanwhile
        received = await asyncio.gather(*(closed_by_server(reader) for reader, _ in connections))
        assert all(r == b"" or r.startswith(b"HTTP/1.1 4") for r in received), received
    finally:
        task.cancel()
        for _, writer in connections:
            writer.close()


async def test_an_idle_connection_that_never_sends_is_closed_too(start_api):
    base = await start_api(**{"http.header_timeout": 1})
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base))
    try:
        assert await closed_by_server(reader) == b""
    finally:
        writer.close()


async def test_connections_over_the_caps_get_503_and_are_closed(start_api, http):
    for cap in ("http.max_connections", "http.max_connections_per_address"):
        base = await start_api(**{cap: 5})
        held = [await asyncio.open_connection("127.0.0.1", port_of(base)) for _ in range(5)]
        try:
            # A request on a held connection proves the five are accepted, not queued in the backlog.
            held[0][1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(held[0][0].readline(), 30)).startswith(b"HTTP/1.1 200"), cap
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base))
            refused = await closed_by_server(reader)
            writer.close()
            assert refused.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in refused, (cap, refused)
        finally:
            for _, w in held:
                w.close()
        # Once they are gone, connections are accepted again.
        answer = await wait.eventually(lambda: Client(http, base).get("/healthz"), message=f"{cap}: accepting again")
        assert answer.status == 200


async def test_a_full_search_class_answers_503_with_retry_after_and_others_still_answer(start_api, http, seed, database_url):
    base = await start_api(**{"concurrency.search": 2})
    me = Client(http, base, (await seed.user()).token)
    busy = sample("a4c_http_in_flight", route_class="search")
    async with holding(database_url, "LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"):
        held = [asyncio.create_task(me.get("/v1/jobs/search", params={"q": "anything"})) for _ in range(2)]
        await wait.eventually(lambda: sample("a4c_http_in_flight", route_class="search") - busy == 2, message="two searches waiting on the lock")
        refused = await me.get("/v1/jobs/search", params={"q": "one more"})
        assert refused.status == 503 and refused.headers["Retry-After"] == "1", refused.body
        assert refused.body["error"]["code"] == "overloaded"
        assert (await me.get("/v1/me")).status == 200  # another class is not affected
    assert [a.status for a in await asyncio.gather(*held)] == [200, 200]
    assert (await me.get("/v1/jobs/search", params={"q": "after"})).status == 200


async def test_a_full_create_class_answers_503_and_slow_handlers_outlive_the_header_timeout(start_api, http, seed, database_url):
    base = await start_api(**{"concurrency.create": 2, "http.header_timeout": 1})
    me = Client(http, base, (await seed.user()).token)
    busy = sample("a4c_http_in_flight", route_class="create")
    async with holding(database_url, "LOCK TABLE host_allocations IN ACCESS EXCLUSIVE MODE"):
        held = [asyncio.create_task(me.post("/v1/workspaces", workspace())) for _ in range(2)]
        await wait.eventually(
            lambda: sample("a4c_http_in_flight", route_class="create") - busy == 2, message="two creates waiting on the allocations table"
        )
        refused = await me.post("/v1/workspaces", workspace())
        assert refused.status == 503 and refused.headers["Retry-After"] == "1", refused.body
        # An idle connection opened now is closed by the header deadline while the creates still wait.
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base))
        assert await closed_by_server(reader) == b""
        writer.close()
        assert not any(task.done() for task in held)
    assert [a.status for a in await asyncio.gather(*held)] == [202, 202]


async def test_a_client_that_disconnects_cancels_its_create_and_leaves_no_workspace(start_api, seed, database_url):
    base = await start_api()
    user = await seed.user()
    name = f"gone-{uuid.uuid4().hex[:8]}"
    body = json.dumps(workspace(name)).encode()
    cancelled = sample("a4c_http_requests_total", method="POST", route="/v1/workspaces", status="499")
    busy = sample("a4c_http_in_flight", route_class="create")
    async with holding(database_url, "LOCK TABLE host_allocations IN ACCESS EXCLUSIVE MODE"):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base))
        writer.write(
            f"POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await wait.eventually(
            lambda: sample("a4c_http_in_flight", route_class="create") - busy == 1, message="the create waits on the allocations table"
        )
        writer.close()
        await wait.eventually(
            lambda: sample("a4c_http_requests_total", method="POST", route="/v1/workspaces", status="499") - cancelled == 1,
            message="the create was cancelled (counted as 499)",
        )
    # The lock is free: a create that had survived would now commit. Wait until nothing waits on it any more.
    await wait.eventually(lambda: _lock_waiters(seed), message="no backend waiting on the allocations table")
    assert await seed.scalar(sa.select(sa.func.count()).select_from(models.Workspace).where(models.Workspace.name == name)) == 0


async def _lock_waiters(seed: typing.Any) -> bool:
    waiting = await seed.scalar(
        sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%host_allocations%'"
        )
    )
    return waiting == 0
