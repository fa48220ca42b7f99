"""GET /v1/jobs/search over real HTTP: ownership in hits and facets, which backend answered, the breaker, bad input."""

from __future__ import annotations

import typing
import uuid

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from controlplane.api import app as api_app
from controlplane.db import engine as db_engine
from controlplane.db import models
from controlplane.search import reindex
from controlplane.search.domain import query as query_mod
from controlplane.services import users
from tests.controlplane.search import conftest
from tests.harness import jobgen, ports, postgres_server, wait


# This module stops its Elasticsearch node: it gets one of its own, not the run's shared one.
@pytest.fixture(scope="module")
def elasticsearch(module_elasticsearch):
    return module_elasticsearch


@pytest.fixture(scope="module")
def elasticsearch_url(module_elasticsearch) -> str:
    return module_elasticsearch.url


@pytest.fixture
async def start_api(settings) -> typing.AsyncIterator[typing.Callable[..., typing.Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start_app(configured) -> str:
        runner = web.AppRunner(api_app.init_app(configured), access_log=None, shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def start(**search: typing.Any) -> str:
        overrides = {**{f"search.{k}": v for k, v in search.items()}, "rate_limit.enabled": False}
        return await start_app(_with(settings, overrides))

    start.app = start_app  # type: ignore[attr-defined]
    yield start
    for runner in reversed(runners):
        await runner.cleanup()


def _with(settings, overrides: dict[str, typing.Any]):
    from controlplane import settings as cp_settings

    data = settings.model_dump()
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        data[section][key] = value
    return cp_settings.Settings.model_validate(data)


@pytest.fixture
async def tokens(db, engine) -> dict[str, str]:
    """API tokens of the generated users alice and bob, and of an admin."""
    people = {u.name: u.id for u in jobgen.users()}
    out = {}
    async with db_engine.sessionmaker(engine)() as session, session.begin():
        for name in ("alice", "bob"):
            out[name] = (await users.issue_token(session, people[name], name="t")).token
        admin = await users.create_user(session, f"root{uuid.uuid4().hex[:6]}", models.Role.ADMIN)
        out["admin"] = (await users.issue_token(session, admin.id, name="t")).token
    return out


async def _get(http: aiohttp.ClientSession, base: str, token: str, params: list[tuple[str, str]] | None = None) -> tuple[int, typing.Any]:
    async with http.get(f"{base}/v1/jobs/search", params=params or [], headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def http() -> typing.AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_user_sees_only_their_own_jobs_in_hits_totals_and_facets(db, tokens, start_api, http):
    rows = await conftest.load_jobs(db, 120)
    base = await start_api(elasticsearch_url=None)
    mine = sum(1 for r in rows if r[jobgen.COLUMNS.index("user_name")] == "alice")
    status, body = await _get(http, base, tokens["alice"], [("limit", "500")])
    assert status == 200, body
    assert body["total"] == mine == len(body["jobs"]) > 0
    assert {j["user_name"] for j in body["jobs"]} == {"alice"}
    assert body["facets"]["user"] == [{"value": "alice", "count": mine}]
    assert sum(b["count"] for b in body["facets"]["status"]) == mine
    status, everything = await _get(http, base, tokens["admin"], [("limit", "1")])
    assert everything["total"] == 120 and len(everything["facets"]["user"]) > 1


async def test_without_elasticsearch_postgresql_answers_and_that_is_not_a_degradation(db, tokens, start_api, http):
    await conftest.load_jobs(db, 30)
    base = await start_api(elasticsearch_url=None)
    status, body = await _get(http, base, tokens["admin"], [("status", "failed"), ("status", "succeeded"), ("q", '"no space left"')])
    assert status == 200, body
    assert (body["backend"], body["degraded"]) == ("postgresql", False)
    assert body["query"] == 'status:failed,succeeded "no space left"'
    assert all(j["status"] in ("failed", "succeeded") for j in body["jobs"])


async def test_pages_follow_the_cursor_to_the_end_without_repeats(db, tokens, start_api, http):
    await conftest.load_jobs(db, 57)
    base = await start_api(elasticsearch_url=None)
    seen, cursor = [], None
    for _ in range(20):
        params = [("limit", "10"), ("facets", "false")] + ([("cursor", cursor)] if cursor else [])
        status, body = await _get(http, base, tokens["admin"], params)
        assert status == 200 and body["facets"] is None
        seen += [j["id"] for j in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 57
    created = await db.fetch("SELECT id::text FROM jobs ORDER BY created_at DESC, id DESC")
    assert seen == [r["id"] for r in created]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ([("status", "bogus")], "status"),
        ([("cursor", "not-a-cursor")], "cursor"),
        ([("limit", "abc")], "limit"),
        ([("limit", "0")], "limit"),
        ([("interval", "year")], "interval"),
        ([("facets", "maybe")], "facets"),
        ([("colour", "red")], "colour"),
        ([("created_after", "yesterday")], "created_after"),
        ([("sort", "-name")], "sort"),
        ([("limit", "5"), ("limit", "6")], "limit"),
    ],
)
async def test_bad_parameters_answer_422_naming_the_parameter(db, tokens, start_api, http, params, field):
    base = await start_api(elasticsearch_url=None)
    status, body = await _get(http, base, tokens["alice"], params)
    assert status == 422, body
    assert [f["path"] for f in body["error"]["fields"]] == [field]


async def test_the_openapi_document_declares_the_search_parameters_and_repeated_filters_are_accepted(db, tokens, start_api, http):
    base = await start_api(elasticsearch_url=None)
    async with http.get(f"{base}/v1/openapi.json") as resp:
        document = await resp.json()
    declared = {p["name"]: p for p in document["paths"]["/v1/jobs/search"]["get"]["parameters"] if p["in"] == "query"}
    filters = [*query_mod.FILTER_KEYS, *(f"not_{k}" for k in query_mod.FILTER_KEYS)]
    assert set(declared) == {"query", *filters, "q", *query_mod.TIME_PARAMS, "since", "sort", "limit", "cursor", "facets", "interval"}
    for name in (*filters, "q", *query_mod.TIME_PARAMS, "since"):
        assert declared[name]["schema"] == {"type": "array", "items": {"type": "string"}}, name
    assert declared["limit"]["schema"] == {"type": "integer", "minimum": 1}
    assert declared["interval"]["schema"]["enum"] == ["minute", "hour", "day", "week", "month"]
    status, body = await _get(http, base, tokens["alice"], [("status", "failed"), ("status", "RUNNING"), ("since", "2h"), ("since", "1h")])
    assert status == 200, body
    assert body["query"].startswith("status:failed,running created>=")


async def test_a_cursor_from_another_sort_is_refused(db, tokens, start_api, http):
    await conftest.load_jobs(db, 5)
    base = await start_api(elasticsearch_url=None)
    _, first = await _get(http, base, tokens["admin"], [("limit", "2")])
    status, body = await _get(http, base, tokens["admin"], [("limit", "2"), ("sort", "updated_at"), ("cursor", first["next_cursor"])])
    assert status == 422 and body["error"]["fields"][0]["path"] == "cursor"


async def test_elasticsearch_answers_when_healthy_and_postgresql_while_it_is_down_until_a_probe_succeeds(
    settings, db, engine, es, tokens, start_api, http, elasticsearch
):
    await conftest.load_jobs(db, 40)
    await reindex.reindex(settings, engine, es)
    base = await start_api(breaker_failures=2, breaker_reset=1.0, request_timeout=1.0)
    status, body = await _get(http, base, tokens["alice"], [("q", "space")])
    assert status == 200 and (body["backend"], body["degraded"]) == ("elasticsearch", False), body
    healthy = body
    elasticsearch.stop()
    try:
        answers = [await _get(http, base, tokens["alice"], [("q", "space")]) for _ in range(4)]
        assert all(s == 200 for s, _ in answers)
        assert all((b["backend"], b["degraded"]) == ("postgresql", True) for _, b in answers)
        assert all(b["jobs"] == healthy["jobs"] and b["facets"] == healthy["facets"] for _, b in answers)
        metrics = await (await http.get(f"{base}/metrics")).text()
        assert 'a4c_search_breaker{a4c_search_breaker="open"} 1.0' in metrics
    finally:
        elasticsearch.start()

    async def back() -> bool:
        _, body = await _get(http, base, tokens["alice"], [("q", "space")])
        return body["backend"] == "elasticsearch" and not body["degraded"]

    await wait.eventually(back, timeout=15, message="the half-open probe finds Elasticsearch again")
    metrics = await (await http.get(f"{base}/metrics")).text()
    assert 'a4c_search_requests_total{backend="postgresql",degraded="true"}' in metrics


async def _count_on(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM jobs")
    finally:
        await conn.close()


async def test_the_fallback_reads_a_streaming_replica_skips_one_that_does_not_answer_and_uses_the_primary_when_none_does(
    db, tokens, start_api, http, settings, database_url, postgres_replica
):
    first = {str(r[0]) for r in await conftest.load_jobs(db, 12, seed=3)}
    # The same database on the hot standby: what the primary committed arrives by streaming replication.
    replica_url = postgres_server.with_database(postgres_replica.url, database_url.rsplit("/", 1)[1])
    await wait.eventually(lambda: _count_on(replica_url), timeout=30, message="the jobs reach the replica")
    assert await _count_on(replica_url) == 12

    # Replay paused: jobs committed now are on the primary only, so an answer without them is the replica's.
    postgres_replica.pause_replay()
    try:
        later = {str(r[0]) for r in await conftest.load_jobs(db, 5, seed=4)}
        dead = f"postgresql://postgres@127.0.0.1:{ports.free_port()}/nothing"  # nothing listens: refused at once
        replicated = _with(settings, {"database.replica_urls": [replica_url, dead], "search.elasticsearch_url": None, "rate_limit.enabled": False})
        base = await start_api.app(replicated)
        for _ in range(6):  # the order is random: every answer comes from the live replica
            status, body = await _get(http, base, tokens["admin"])
            assert status == 200 and body["backend"] == "postgresql", body
            assert {j["id"] for j in body["jobs"]} == first, "the replica answered, and it has not replayed the later jobs"

        down = _with(settings, {"database.replica_urls": [dead], "search.elasticsearch_url": None, "rate_limit.enabled": False})
        base_down = await start_api.app(down)
        status, body = await _get(http, base_down, tokens["admin"])
        assert status == 200 and {j["id"] for j in body["jobs"]} == first | later, "no replica answers: the primary does"
    finally:
        postgres_replica.resume_replay()

    async def caught_up() -> bool:
        _, body = await _get(http, base, tokens["admin"])
        return {j["id"] for j in body["jobs"]} == first | later

    await wait.eventually(caught_up, timeout=30, message="the replica serves the later jobs once replay resumes")
