"""PostgreSQL hung (SIGSTOP: it accepts TCP and answers nothing) under a running system.

Requests answer 503 with a clear error within seconds instead of hanging for
the whole outage, and after the thaw no host is declared down and no
workspace lost: the reconciler judges silence only up to what the events
consumer has applied (controlplane/domain/hearing.py), and the heartbeats
queued in the broker during the hang are applied first.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.e2e import system
from tests.harness import postgres_server, wait

DEADLINE = 10.0  # seconds: each request must have answered 503 by then
FROZEN_FOR = 20.0  # seconds: well past reconciler.host_down_after (8 s in tests/e2e/conftest.py)


# This module hangs its PostgreSQL: the system runs on a server of its own.
@pytest.fixture(scope="module")
def module_database_url(private_postgres):
    from controlplane.db import migrate

    url = postgres_server.create_database(private_postgres.url, "a4c_hang")
    postgres_server.in_thread(migrate.upgrade, url)
    return url


async def _timed(method: str, url: str, token: str | None, body: dict | None = None) -> tuple[int, dict, float]:
    """(status, body, seconds); a request still unanswered at the deadline fails the test."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as session:
        try:
            async with session.request(method, url, json=body, timeout=aiohttp.ClientTimeout(total=DEADLINE)) as resp:
                body = await resp.json(content_type=None)
                return resp.status, body, time.monotonic() - started
        except TimeoutError:
            raise AssertionError(f"{method} {url} did not answer within {DEADLINE:g} s with PostgreSQL hung") from None


async def _hosts_active(api: system.Api) -> list[dict]:
    hosts = (await api.get("/v1/hosts"))["items"]
    down = [f"{h['name']}: {h['status']}" for h in hosts if h["status"] != "active"]
    assert not down, f"a host was declared down after PostgreSQL hung: {down}"
    return hosts


def test_hung_database_answers_503_within_seconds_and_declares_no_host_down(a4c_system, private_postgres):
    sys_ = a4c_system
    plane = sys_.planes[0]

    async def scenario() -> None:
        body = {"name": "hang-ws", "image_ref": sys_.workspace_image, "cpus": 0.1, "memory_mb": 32, "disk_gb": 1}
        ws = (await sys_.api.post("/v1/workspaces", body, expect=202))["workspace"]

        async def running() -> bool:
            return (await sys_.api.get(f"/v1/workspaces/{ws['id']}"))["observed_state"] == "running"

        await wait.eventually(running, timeout=60, interval=0.3, message="workspace running before the hang")
        me = await sys_.api.get("/v1/me")
        fresh = (await sys_.api.post(f"/v1/users/{me['id']}/tokens", {"name": "never looked up"}, expect=201))["token"]

        admin = sys_.admin.headers["Authorization"].split()[1]
        # Fresh in both instances' token caches (auth.cache_ttl, 5 s), so these requests reach their queries.
        await sys_.api.get("/v1/me")
        await system.Api(sys_.planes[1].url, admin).get("/v1/me")
        private_postgres.freeze()
        try:
            frozen_at = time.monotonic()
            answers = await asyncio.gather(
                _timed("GET", f"{plane.url}/v1/workspaces", admin),  # a cached token: the query hangs
                _timed("GET", f"{plane.url}/v1/hosts", fresh),  # an unknown token: the lookup hangs
                _timed("GET", f"{sys_.planes[1].url}/v1/jobs?limit=5", fresh),
                _timed("GET", f"{plane.url}/readyz", None),
                _timed("POST", f"{sys_.planes[1].url}/v1/workspaces", admin, {**body, "name": "during-hang"}),  # a write
            )
            for (status, answer, seconds), what in zip(answers, ("workspaces", "hosts", "jobs", "readyz", "create"), strict=True):
                assert status == 503, f"{what}: {status} {answer} after {seconds:.1f} s"
                assert answer["error"]["code"] == "unavailable", answer
                assert "database" in answer["error"]["message"], answer
            # Once more, now that the pools hold connections that timed out.
            status, answer, _ = await _timed("GET", f"{plane.url}/v1/workspaces", fresh)
            assert status == 503, answer
            left = FROZEN_FOR - (time.monotonic() - frozen_at)
            if left > 0:
                await asyncio.sleep(left)  # the outage itself: long enough for a host to look silent past host_down_after
        finally:
            private_postgres.thaw()

        # The system comes back, and through two host_down_after periods (8 s each) nobody is declared down.
        await wait.eventually(lambda: sys_.api.get("/v1/hosts"), timeout=30, interval=0.5, message="the API answers after the thaw")
        watched_until = time.monotonic() + 20.0
        while time.monotonic() < watched_until:
            await _hosts_active(sys_.api)
            current = await sys_.api.get(f"/v1/workspaces/{ws['id']}")
            assert current["observed_state"] == "running", f"workspace after the hang: {current['observed_state']} ({current['state_reason']})"
            await asyncio.sleep(0.5)

    system.run_sync(scenario())
