"""The Elasticsearch-API server the harness provides works with the official async client, and can be stopped."""

from __future__ import annotations

import elastic_transport
import elasticsearch as es
import pytest

from tests.harness import search_server

pytestmark = pytest.mark.search


@pytest.fixture
async def client(elasticsearch):
    async with es.AsyncElasticsearch(elasticsearch.url, request_timeout=10) as c:
        yield c


async def test_an_indexed_document_is_found_by_a_full_text_query(client, topic_prefix):
    index = f"{topic_prefix}-jobs"
    await client.indices.create(index=index, mappings={"properties": {"error": {"type": "text"}, "status": {"type": "keyword"}}})
    await client.index(index=index, id="job-1", document={"error": "disk quota exceeded on host alpha", "status": "failed"})
    await client.index(index=index, id="job-2", document={"error": "image pulled fine", "status": "succeeded"}, refresh=True)

    found = await client.search(index=index, query={"match": {"error": "quota"}})

    assert [hit["_id"] for hit in found["hits"]["hits"]] == ["job-1"]


async def test_bulk_writes_go_through_the_shim(client, topic_prefix):
    index = f"{topic_prefix}-bulk"
    operations = []
    for n in range(3):
        operations += [{"index": {"_index": index, "_id": str(n)}}, {"error": f"failure number {n}"}]

    result = await client.bulk(operations=operations, refresh=True)

    assert result["errors"] is False
    assert (await client.count(index=index))["count"] == 3


async def test_an_older_external_version_is_rejected_with_409(client, topic_prefix):
    index = f"{topic_prefix}-versions"
    await client.index(index=index, id="job-1", document={"status": "running"}, version=5, version_type="external")

    with pytest.raises(es.ConflictError) as conflict:
        await client.index(index=index, id="job-1", document={"status": "queued"}, version=4, version_type="external")

    assert conflict.value.meta.status == 409
    assert (await client.get(index=index, id="job-1"))["_source"] == {"status": "running"}


async def test_a_stopped_server_refuses_connections_and_the_same_url_works_after_start(elasticsearch, topic_prefix):
    index = f"{topic_prefix}-restart"
    async with es.AsyncElasticsearch(elasticsearch.url, request_timeout=5, max_retries=0) as client:
        await client.index(index=index, id="kept", document={"note": "written before the stop"}, refresh=True)

        elasticsearch.stop()
        try:
            assert not search_server.answers(elasticsearch.url)
            with pytest.raises(elastic_transport.ConnectionError):
                await client.info()
        finally:
            elasticsearch.start()

        assert (await client.get(index=index, id="kept"))["_source"] == {"note": "written before the stop"}
