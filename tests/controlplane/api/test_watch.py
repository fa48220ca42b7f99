"""Blocking reads of a job or a workspace (controlplane/api/watches.py, controlplane/api/changes.py, migration 0013).

Real API instances on one real PostgreSQL. A read is known to be blocked once
the ``a4c_watch_waiting`` gauge the code exposes counts it; changes are
committed straight to the database (as an agent's event or another instance
would make them) or through another instance's API.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import prometheus_client
import sqlalchemy as sa

from tests.harness import wait

LONG = "120s"  # far longer than any test here runs: an answer before it came from the change


def workspace(**fields):
    return {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 200, "memory_mb": 256, "disk_gb": 1, **fields}


def waiting() -> float:
    return prometheus_client.REGISTRY.get_sample_value("a4c_watch_waiting") or 0.0


async def blocked(count: float) -> None:
    await wait.eventually(lambda: waiting() >= count, timeout=15, message=f"fewer than {count:g} reads are blocked")


async def pending_job(me):
    """A workspace with no host to go to, and its pending create job (as the API shows it)."""
    made = (await me.post("/v1/workspaces", workspace())).body
    return made["workspace"], (await me.get(f"/v1/jobs/{made['job']['id']}"))


async def update(seed, sql: str, **params) -> None:
    async with seed.sessions() as session, session.begin():
        await session.execute(sa.text(sql), params)


async def test_a_blocking_read_answers_when_the_job_changes_before_its_wait_runs_out(client, seed):
    me = client((await seed.user()).token)
    _, first = await pending_job(me)
    index = int(first.headers["X-A4C-Index"])
    assert index == first.body["version"]
    before = waiting()
    read = asyncio.create_task(me.get(f"/v1/jobs/{first.body['id']}", params={"index": str(index), "wait": LONG}))
    await blocked(before + 1)
    assert not read.done(), "the read answered although nothing changed"

    began = time.monotonic()
    await update(seed, "UPDATE jobs SET reason = 'tested', log_tail = 'step 1\n' WHERE id = :id", id=first.body["id"])
    answer = await asyncio.wait_for(read, 60)
    assert time.monotonic() - began < 60, "answered only when the wait ran out"
    assert answer.status == 200
    assert answer.body["version"] > index and int(answer.headers["X-A4C-Index"]) == answer.body["version"]
    # A job waiting for a host adds its place in the queue to its reason.
    assert answer.body["reason"].startswith("tested") and answer.body["log_tail"] == "step 1\n"


async def test_a_blocking_read_times_out_with_the_unchanged_object_and_index(client, seed):
    me = client((await seed.user()).token)
    _, first = await pending_job(me)
    index = first.headers["X-A4C-Index"]
    began = time.monotonic()
    answer = await me.get(f"/v1/jobs/{first.body['id']}", params={"index": index, "wait": "1s"})
    assert time.monotonic() - began >= 1.0, "it did not wait"
    assert answer.status == 200 and answer.headers["X-A4C-Index"] == index
    assert answer.body == first.body


async def test_a_read_with_an_older_index_or_none_answers_at_once(client, seed):
    me = client((await seed.user()).token)
    ws, first = await pending_job(me)
    # Index 0 is older than any object: no wait even when a long one is asked.
    answer = await asyncio.wait_for(me.get(f"/v1/jobs/{first.body['id']}", params={"index": "0", "wait": LONG}), 60)
    assert answer.status == 200 and answer.body == first.body
    plain = await me.get(f"/v1/workspaces/{ws['id']}")
    assert plain.status == 200 and int(plain.headers["X-A4C-Index"]) == plain.body["version"]


async def test_a_watched_workspace_wakes_its_watcher_also_when_it_is_deleted(client, seed):
    me = client((await seed.user()).token)
    ws, _ = await pending_job(me)
    first = await me.get(f"/v1/workspaces/{ws['id']}")
    before = waiting()
    read = asyncio.create_task(me.get(f"/v1/workspaces/{ws['id']}", params={"index": first.headers["X-A4C-Index"], "wait": LONG}))
    await blocked(before + 1)
    assert (await me.delete(f"/v1/workspaces/{ws['id']}")).status == 202
    answer = await asyncio.wait_for(read, 60)
    assert answer.status == 404


async def test_a_change_made_through_one_instance_wakes_a_watcher_on_another(start_api, http, seed):
    from tests.controlplane.api.conftest import Client

    user = await seed.user()
    a, b = Client(http, await start_api(), user.token), Client(http, await start_api(), user.token)
    await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * 1024**3, disk_used=0)
    made = (await a.post("/v1/workspaces", workspace(cpus=1))).body
    first = await b.get(f"/v1/workspaces/{made['workspace']['id']}")
    assert first.body["desired_state"] == "running"
    before = waiting()
    read = asyncio.create_task(b.get(f"/v1/workspaces/{first.body['id']}", params={"index": first.headers["X-A4C-Index"], "wait": LONG}))
    await blocked(before + 1)
    assert (await a.post(f"/v1/workspaces/{first.body['id']}/stop")).status == 202
    answer = await asyncio.wait_for(read, 60)
    assert answer.status == 200 and answer.body["desired_state"] == "stopped"
    assert answer.body["version"] > first.body["version"]


async def test_a_wait_is_cut_to_watch_max_wait(start_api, http, seed):
    from tests.controlplane.api.conftest import Client

    me = Client(http, await start_api(**{"watch.max_wait": 1.0}), (await seed.user()).token)
    _, first = await pending_job(me)
    answer = await asyncio.wait_for(me.get(f"/v1/jobs/{first.body['id']}", params={"index": first.headers["X-A4C-Index"], "wait": "1h"}), 60)
    assert answer.status == 200 and answer.headers["X-A4C-Index"] == first.headers["X-A4C-Index"]


async def test_bad_index_or_wait_answers_422_naming_the_parameter(client, seed):
    me = client((await seed.user()).token)
    _, first = await pending_job(me)
    path = f"/v1/jobs/{first.body['id']}"
    for params, field in (
        ({"index": "abc"}, "index"),
        ({"index": "-1"}, "index"),
        ({"index": "1", "wait": "forever"}, "wait"),
        ({"index": "1", "wait": "10x"}, "wait"),
        ({"index": "1", "wait": "-5"}, "wait"),
    ):
        answer = await me.get(path, params=params)
        assert answer.status == 422, (params, answer.status, answer.body)
        assert answer.error_fields() == [field], (params, answer.body)


async def test_watchers_over_the_per_user_limit_get_429_and_over_the_instance_limit_503(start_api, http, seed):
    from tests.controlplane.api.conftest import Client

    url = await start_api(**{"watch.per_user": 1, "watch.per_instance": 2})
    alice, bob, carol = [Client(http, url, (await seed.user()).token) for _ in range(3)]
    _, job = await pending_job(alice)
    path, params = f"/v1/jobs/{job.body['id']}", {"index": job.headers["X-A4C-Index"], "wait": LONG}
    before = waiting()
    first = asyncio.create_task(alice.get(path, params=params))
    await blocked(before + 1)
    refused = await alice.get(path, params=params)
    assert refused.status == 429 and refused.headers["Retry-After"] == "1", refused.body
    # Bob sees only his own jobs: his read is a 404 at once, so he watches one of his own.
    _, bobs = await pending_job(bob)
    second = asyncio.create_task(bob.get(f"/v1/jobs/{bobs.body['id']}", params={"index": bobs.headers["X-A4C-Index"], "wait": LONG}))
    await blocked(before + 2)
    _, carols = await pending_job(carol)
    full = await carol.get(f"/v1/jobs/{carols.body['id']}", params={"index": carols.headers["X-A4C-Index"], "wait": LONG})
    assert full.status == 503 and full.headers["Retry-After"] == "1", full.body
    # A plain read is no watch: never refused by these limits.
    assert (await carol.get(f"/v1/jobs/{carols.body['id']}")).status == 200
    for task in (first, second):
        task.cancel()


async def test_a_lost_change_feed_answers_waiting_reads_at_once_and_waits_resume_when_it_is_back(client, seed):
    me = client((await seed.user()).token)
    _, first = await pending_job(me)
    path, index = f"/v1/jobs/{first.body['id']}", first.headers["X-A4C-Index"]
    before = waiting()
    read = asyncio.create_task(me.get(path, params={"index": index, "wait": LONG}))
    await blocked(before + 1)
    # The feed's LISTEN connection dies (a failover, a network cut): nothing would wake the read, so it answers now.
    await update(
        seed, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'a4c-listen' AND datname = current_database()"
    )
    answer = await asyncio.wait_for(read, 60)
    assert answer.status == 200 and answer.headers["X-A4C-Index"] == index

    # The feed reconnects by itself; once it listens, a read blocks for as long as it asks and a change wakes it.
    await wait.eventually(
        lambda: prometheus_client.REGISTRY.get_sample_value("a4c_watch_feed_up") == 1, timeout=30, message="the feed never came back"
    )
    again = asyncio.create_task(me.get(path, params={"index": index, "wait": LONG}))
    await blocked(before + 1)
    await update(seed, "UPDATE jobs SET reason = 'after the feed came back' WHERE id = :id", id=first.body["id"])
    woken = await asyncio.wait_for(again, 60)
    assert woken.status == 200 and woken.body["reason"].startswith("after the feed came back")


async def test_shutting_down_answers_the_blocked_reads_with_the_unchanged_object(database_url, http, seed):
    """Without this, a blocked read would be cut off at http.shutdown_timeout, its client seeing a dropped connection."""
    from aiohttp import web

    from controlplane.api import app as api_app
    from controlplane.api import listener
    from tests.controlplane.api.conftest import Client, settings_for

    settings = settings_for(database_url)
    runner: web.AppRunner = listener.runner(api_app.init_app(settings), settings.http, shutdown_timeout=20)
    await runner.setup()
    stopping: asyncio.Task[None] | None = None
    try:
        site = await listener.start(runner, settings.http, host="127.0.0.1", port=0)
        me = Client(http, f"http://127.0.0.1:{site.port}", (await seed.user()).token)
        _, first = await pending_job(me)
        before = waiting()
        read = asyncio.create_task(me.get(f"/v1/jobs/{first.body['id']}", params={"index": first.headers["X-A4C-Index"], "wait": LONG}))
        await blocked(before + 1)
        stopping = asyncio.create_task(runner.cleanup())
        answer = await asyncio.wait_for(read, 60)
        assert answer.status == 200 and answer.headers["X-A4C-Index"] == first.headers["X-A4C-Index"]
    finally:
        await (stopping if stopping is not None else runner.cleanup())


async def test_the_watchers_of_one_job_woken_by_one_change_share_one_read(client, seed):
    me = client((await seed.user()).token)
    _, first = await pending_job(me)
    path, params = f"/v1/jobs/{first.body['id']}", {"index": first.headers["X-A4C-Index"], "wait": LONG}
    before = waiting()
    reads = asyncio.gather(*(me.get(path, params=params) for _ in range(20)))
    await blocked(before + 20)
    rereads = prometheus_client.REGISTRY.get_sample_value("a4c_watch_rereads_total") or 0.0
    await update(seed, "UPDATE jobs SET reason = 'one change' WHERE id = :id", id=first.body["id"])
    answers = await asyncio.wait_for(reads, 60)
    assert {(a.status, a.body["version"]) for a in answers} == {(200, first.body["version"] + 1)}
    assert prometheus_client.REGISTRY.get_sample_value("a4c_watch_rereads_total") == rereads + 1
