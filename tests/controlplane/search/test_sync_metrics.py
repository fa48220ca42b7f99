"""What /metrics says about the sync pipeline once jobs have gone from PostgreSQL to the index."""

from __future__ import annotations

import typing

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import parser

from controlplane.api import app as api_app
from controlplane.search import index
from tests.controlplane.search import conftest
from tests.harness import wait

JOBS = 60


@pytest.fixture
async def metrics_url(settings) -> typing.AsyncIterator[str]:
    """A control plane's /metrics; its default contexts start no consumer: the sync is the test's ``pipeline``."""
    app = api_app.init_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    finally:
        await runner.cleanup()


async def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and labels."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_after_jobs_are_synced_the_metrics_show_their_bulk_documents_and_one_sync_latency_each(settings, db, es, engine, pipeline, metrics_url):
    # The registry is the process's: other tests' pipelines counted too, so this test reads differences.
    rows = await conftest.load_jobs(db, JOBS)
    await wait.eventually(lambda: pipeline.indexed == JOBS, timeout=30, message=f"the {JOBS} inserted jobs indexed")
    before = await _scrape(metrics_url)

    # An update stamps updated_at with its commit time, which the latency is measured from.
    await db.execute("UPDATE jobs SET attempts = attempts + 1")
    await wait.eventually(lambda: pipeline.indexed == 2 * JOBS, timeout=30, message=f"the {JOBS} updates indexed")
    await index.refresh(es, settings.search.index_alias)  # a real node shows writes after a refresh
    assert await index.live_count(es, settings.search.index_alias) == len(rows)
    after = await _scrape(metrics_url)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    # Bulk requests carried every updated job (one request or several, none failed).
    assert grew("a4c_search_bulk_size_documents_sum") >= JOBS
    assert grew("a4c_search_bulk_size_documents_count") >= 1
    assert grew("a4c_search_bulk_items_total", outcome="indexed") == JOBS
    assert grew("a4c_search_bulk_failures_total") == 0
    # One commit-to-indexed observation per indexed job, each within seconds, not the job's age.
    assert grew("a4c_search_sync_latency_seconds_count") == JOBS
    assert grew("a4c_search_sync_latency_seconds_bucket", le="30.0") == JOBS
    assert 0 < grew("a4c_search_sync_latency_seconds_sum") < 30 * JOBS
