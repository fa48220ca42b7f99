"""The sync consumer keeps the Elasticsearch jobs alias equal to the jobs table, whatever Kafka replays."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.search import index
from tests.controlplane.search import conftest
from tests.harness import wait


async def _doc(es, alias, job_id):
    found = await es.options(ignore_status=404).get(index=alias, id=job_id)
    return found.body.get("_source") if found.body.get("found") else None


async def test_inserted_and_updated_jobs_reach_the_alias_at_their_latest_version(settings, db, es, pipeline):
    rows = await conftest.load_jobs(db, 20)
    job_id = rows[0][0]
    await db.execute("UPDATE jobs SET error = 'disk exploded', status = 'failed', finished_at = now() WHERE id = $1", job_id)
    version = await db.fetchval("SELECT version FROM jobs WHERE id = $1", job_id)
    alias = settings.search.index_alias

    async def synced():
        doc = await _doc(es, alias, str(job_id))
        assert doc is not None and doc["version"] == version and doc["error"] == "disk exploded"
        return await index.live_count(es, alias) == 20

    await wait.eventually(synced, timeout=20, message="all 20 jobs indexed, the updated one at its new version")
