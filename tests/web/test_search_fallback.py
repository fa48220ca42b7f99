"""The jobs page says when its results come from the PostgreSQL fallback because Elasticsearch is down."""

from __future__ import annotations

import pytest

from controlplane.db import engine as db_engine
from controlplane.search import client, reindex
from tests.web import conftest, dashboard


# This module stops its Elasticsearch node: it gets one of its own, not the run's shared one.
@pytest.fixture(scope="module")
def elasticsearch(module_elasticsearch):
    return module_elasticsearch


@pytest.fixture(scope="module")
def elasticsearch_url(module_elasticsearch) -> str:
    return module_elasticsearch.url


QUERY = 'status:failed "no space left"'


async def test_the_banner_says_when_results_come_from_the_postgresql_fallback(
    db, people, start_dashboard, page, http, elasticsearch, topic_prefix, database_url
):
    await conftest.load_jobs(db, 600)
    overrides = {
        "search.elasticsearch_url": elasticsearch.url,
        "search.index_alias": f"{topic_prefix.lower()}-jobs",
        "search.shards": 1,
        "search.replicas": 0,
        "search.request_timeout": 2.0,
    }
    settings = conftest.settings_for(database_url, **overrides)
    engine = db_engine.create(settings.database)
    es = client.create(settings.search)
    try:
        await reindex.reindex(settings, engine, es)
        base = await start_dashboard(**overrides)
        await dashboard.sign_in(page, base, people.admin.token)
        await dashboard.search(page, QUERY)
        from_es = await dashboard.table_ids(page)
        assert from_es, "the query matches generated jobs"
        assert await page.locator(".banner-slot").get_attribute("data-backend") == "elasticsearch"
        assert await page.locator(".banner.warn").count() == 0
        assert "Answered by Elasticsearch" in await page.locator(".summary").inner_text()

        elasticsearch.stop()
        try:
            await dashboard.search(page, f"{QUERY} -kind:host_cleanup")
            banner = page.locator(".banner.warn")
            await banner.wait_for()
            assert "PostgreSQL fallback" in await banner.inner_text()
            assert await page.locator(".banner-slot").get_attribute("data-backend") == "postgresql"
            expected = await dashboard.api_search(http, base, people.admin.token, [("query", f"{QUERY} -kind:host_cleanup"), ("limit", "50")])
            assert (expected["backend"], expected["degraded"]) == ("postgresql", True)
            assert await dashboard.table_ids(page) == [j["id"] for j in expected["jobs"]]
            await dashboard.screenshot(page, "10-jobs-fallback-banner")
        finally:
            elasticsearch.start()
    finally:
        await es.close()
        await engine.dispose()
        await _drop_indices(settings)


async def _drop_indices(settings) -> None:
    es = client.create(settings.search)
    alias = settings.search.index_alias
    try:
        for name in (await es.indices.get(index=f"{alias}-*")).body:
            await es.indices.delete(index=name)
        await es.indices.delete_index_template(name=alias)
    except Exception:  # noqa: BLE001, S110 - best effort: the server's memory is this run's only
        pass
    finally:
        await es.close()


async def test_without_elasticsearch_configured_postgresql_answers_without_a_warning(db, people, start_dashboard, page):
    await conftest.load_jobs(db, 50)
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.admin.token)
    await dashboard.search(page, "status:failed")
    assert await page.locator(".banner.warn").count() == 0
    assert "Answered by PostgreSQL" in await page.locator(".summary").inner_text()
