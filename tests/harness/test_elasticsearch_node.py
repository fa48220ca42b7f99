"""The Elasticsearch node the harness builds from Maven Central is Elasticsearch 8 itself, spoken to by
the official client with no shim: composable templates, external versions, phrase search and
aggregations work on the jobs index's own template, a restart keeps the documents, a wiped one does not."""

from __future__ import annotations

import time

import elasticsearch
import pytest

from controlplane.search.domain import mapping
from tests.harness import elasticsearch_node as node_mod

pytestmark = pytest.mark.search

ALIAS = "jobs"
INDEX = "jobs-20250101t120000-ab12"


@pytest.fixture
def node(tmp_path):
    node = node_mod.ElasticsearchNode(tmp_path / "es")
    try:
        node.start()
        yield node
    finally:
        node.kill()


@pytest.fixture
async def es(node):
    client = elasticsearch.AsyncElasticsearch(node.url, request_timeout=30)
    yield client
    await client.close()


def _job(i: int, *, version: int = 1) -> dict:
    return {
        "id": f"job-{i}",
        "kind": "build" if i % 2 else "run",
        "status": "failed" if i % 3 == 0 else "succeeded",
        "created_at": f"2025-01-{i + 1:02d}T10:00:00.123456Z",
        "error": f"connection refused by host {i}" if i % 3 == 0 else None,
        "text": "the step failed: connection refused" if i % 3 == 0 else "all steps passed",
        "version": version,
        "deleted": False,
        "attempts": 1,
    }


async def _index_jobs(es: elasticsearch.AsyncElasticsearch, count: int, *, version: int) -> dict:
    operations: list[dict] = []
    for i in range(count):
        operations.append({"index": {"_index": ALIAS, "_id": f"job-{i}", "version": version, "version_type": "external"}})
        operations.append(_job(i, version=version))
    return (await es.bulk(operations=operations, refresh=True)).body


async def _create_jobs_index(es: elasticsearch.AsyncElasticsearch) -> None:
    await es.indices.put_index_template(name=ALIAS, **mapping.template(ALIAS, shards=1, replicas=0, refresh_interval=1.0))
    await es.indices.create(index=INDEX, aliases={ALIAS: {"is_write_index": True}})
    await es.cluster.health(index=INDEX, wait_for_status="yellow", timeout="30s")


def test_fetch_is_cached_after_the_first_call(tmp_path):
    home = node_mod.fetch()
    assert (home / "lib" / f"elasticsearch-{node_mod.VERSION}.jar").exists()
    assert (home / "classes" / "org" / "elasticsearch" / "node" / "Launcher.class").exists()
    began = time.monotonic()
    assert node_mod.fetch() == home
    assert time.monotonic() - began < 0.5


async def test_the_official_client_indexes_and_searches_the_jobs_index(node, es):
    info = await es.info()
    assert info["version"]["number"].startswith("8.")
    assert info["version"]["build_flavor"] == "default"
    assert node.version == info["version"]["number"] and node.flavor == "default"
    assert await es.ping()

    await _create_jobs_index(es)
    assert (await es.indices.get_index_template(name=ALIAS))["index_templates"][0]["name"] == ALIAS
    mappings = (await es.indices.get_mapping(index=INDEX))[INDEX]["mappings"]
    assert mappings["dynamic"] == "strict" and mappings["properties"]["created_at"]["type"] == "date_nanos"
    assert await es.indices.get_alias(name=ALIAS) == {INDEX: {"aliases": {ALIAS: {"is_write_index": True}}}}

    # The template's analyzer runs (pattern_replace, whitespace, lowercase, length, keyword_marker, porter2 stemmer).
    tokens = await es.indices.analyze(index=INDEX, field="text", text="Builds FAILED: exit 127 x86_64 connections")
    assert [t["token"] for t in tokens["tokens"]] == ["build", "fail", "exit", "127", "x86", "64", "connect"]

    written = await _index_jobs(es, 12, version=5)
    assert written["errors"] is False
    # An older external version loses: a replayed update cannot overwrite a newer document.
    stale = await es.bulk(
        operations=[
            {"index": {"_index": ALIAS, "_id": "job-0", "version": 4, "version_type": "external"}},
            _job(0, version=4),
        ]
    )
    assert stale["errors"] is True
    assert stale["items"][0]["index"]["status"] == 409
    assert stale["items"][0]["index"]["error"]["type"] == "version_conflict_engine_exception"
    with pytest.raises(elasticsearch.ConflictError):
        await es.index(index=ALIAS, id="job-0", document=_job(0, version=5), version=5, version_type="external")
    assert (await es.get(index=ALIAS, id="job-0"))["_version"] == 5
    assert (await es.count(index=ALIAS))["count"] == 12

    found = await es.search(
        index=ALIAS,
        query={"bool": {"must": [{"match_phrase": {"text": "connection refused"}}], "filter": [{"terms": {"kind": ["build", "run"]}}]}},
        aggs={
            "status": {"terms": {"field": "status"}},
            "kind": {"terms": {"field": "kind"}},
            "per_week": {"date_histogram": {"field": "created_at", "calendar_interval": "week"}},
        },
        sort=[{"created_at": "desc"}, {"id": "asc"}],
        size=2,
        track_total_hits=True,
    )
    assert found["hits"]["total"] == {"value": 4, "relation": "eq"}
    assert [hit["_id"] for hit in found["hits"]["hits"]] == ["job-9", "job-6"]
    assert found["aggregations"]["status"]["buckets"] == [{"key": "failed", "doc_count": 4}]
    assert {b["key"]: b["doc_count"] for b in found["aggregations"]["kind"]["buckets"]} == {"run": 2, "build": 2}
    assert sum(b["doc_count"] for b in found["aggregations"]["per_week"]["buckets"]) == 4
    assert found["aggregations"]["per_week"]["buckets"][0]["key_as_string"] == "2024-12-30T00:00:00.000Z"  # a Monday

    rest = await es.search(
        index=ALIAS,
        query={"query_string": {"query": "status:failed AND refused", "default_field": "text"}},
        sort=[{"created_at": "desc"}, {"id": "asc"}],
        size=10,
        search_after=found["hits"]["hits"][-1]["sort"],
    )
    assert [hit["_id"] for hit in rest["hits"]["hits"]] == ["job-3", "job-0"]
    assert "text" not in rest["hits"]["hits"][0]["_source"]  # excluded from _source by the template

    health = await es.cluster.health(wait_for_status="yellow", timeout="5s")
    assert health["status"] in ("green", "yellow")


async def test_a_restart_keeps_the_documents_and_a_wipe_loses_them(node, es):
    await _create_jobs_index(es)
    assert (await _index_jobs(es, 5, version=2))["errors"] is False
    url = node.url

    node.stop()
    assert not node.running
    with pytest.raises(elasticsearch.ConnectionError):
        await es.options(max_retries=0).info()

    node.start()
    assert node.url == url
    await es.cluster.health(index=INDEX, wait_for_status="yellow", timeout="30s")
    assert (await es.count(index=ALIAS))["count"] == 5
    assert (await es.get(index=ALIAS, id="job-4"))["_version"] == 2

    # A crash keeps the data too: the translog replays.
    await es.index(index=ALIAS, id="job-5", document=_job(5, version=3), version=3, version_type="external")
    node.kill()
    node.start()
    await es.cluster.health(index=INDEX, wait_for_status="yellow", timeout="30s")
    assert (await es.get(index=ALIAS, id="job-5"))["_version"] == 3

    node.stop(lose_data=True)
    node.start()
    assert node.url == url
    assert not await es.indices.exists(index=INDEX)
    assert (await es.indices.get_index_template())["index_templates"] == []
    assert (await es.count())["count"] == 0
