"""``search reindex`` builds a new index while writes go on, never leaves searches empty, resumes after a crash."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from controlplane.db import models
from controlplane.search import check, index, reindex, service
from controlplane.search.domain import breaker as breaker_mod
from controlplane.search.domain import query as query_mod
from controlplane.services import access
from tests.controlplane.search import conftest
from tests.harness import wait

WRITES_PER_PAGE = 15
ADMIN = access.Principal(uuid.uuid4(), "root", models.Role.ADMIN)


async def _no_drift(settings, engine, es) -> None:
    async def clean():
        found = await check.check(settings, engine, es, settle=0.2, rounds=1)
        assert found.clean, [d.describe() for d in found.drifted]
        return True

    await wait.eventually(clean, timeout=30, message="search check reports zero drift")


async def test_a_reindex_during_writes_swaps_the_alias_and_every_search_meanwhile_finds_jobs(settings, db, es, engine, pipeline):
    settings = settings.model_copy(update={"search": settings.search.model_copy(update={"reindex_batch": 40})})
    rows = await conftest.load_jobs(db, 300)
    await _no_drift(settings, engine, es)
    before = await index.behind(es, settings.search.index_alias)
    backends = service.Backends(settings.search, es, [engine], breaker_mod.Breaker(3, 60.0, lambda: 0.0))
    done = asyncio.Event()
    totals: list[tuple[str, int]] = []
    written = {"inserted": 0, "updated": 0, "purged": 0, "deleted": 0}
    writer_done = asyncio.Event()

    async def writer() -> None:
        rng = random.Random(4)
        live = [r[0] for r in rows]
        for n in range(200):  # bounded: at most 200 changes
            if done.is_set():
                break
            action = rng.random()
            if action < 0.3:
                live += [r[0] for r in await conftest.load_jobs(db, 2, seed=1000 + n)]
                written["inserted"] += 2
            elif action < 0.85:
                await db.execute("UPDATE jobs SET attempts = attempts + 1, reason = $2 WHERE id = $1", rng.choice(live), f"r{n}")
                written["updated"] += 1
            elif action < 0.93:
                await db.execute("DELETE FROM jobs WHERE id = $1", live.pop(rng.randrange(len(live))))
                written["purged"] += 1
            else:
                await db.execute("UPDATE jobs SET deleted_at = now() WHERE id = $1", live.pop(rng.randrange(len(live))))
                written["deleted"] += 1
            await asyncio.sleep(0.01)
        writer_done.set()

    async def searcher() -> None:
        while not done.is_set():
            found = await service.search(backends, query_mod.Query(), ADMIN, limit=5)
            totals.append((found.backend, found.total))
            await asyncio.sleep(0.02)

    async def slowly(phase: str, rows: int) -> None:
        # Every page waits for the next WRITES_PER_PAGE changes, so writes interleave
        # with the whole reindex however fast this machine runs it.
        target = sum(written.values()) + WRITES_PER_PAGE
        await wait.eventually(
            lambda: writer_done.is_set() or sum(written.values()) >= target, timeout=30, message=f"{WRITES_PER_PAGE} writes during a {phase} page"
        )

    tasks = [asyncio.create_task(writer()), asyncio.create_task(searcher())]
    try:
        report = await asyncio.wait_for(reindex.reindex(settings, engine, es, on_page=slowly), 120)
    finally:
        done.set()
        await asyncio.gather(*tasks)

    assert report.index not in before and report.old == before
    assert await index.behind(es, settings.search.index_alias) == [report.index]
    assert not await es.indices.exists(index=before[0]), "the old index is removed"
    assert report.backfilled >= 300 and report.replayed > 0
    assert written["updated"] > 50 and written["inserted"] > 0 and written["purged"] > 0, written
    assert len(totals) > 20 and all(backend == "elasticsearch" and total > 0 for backend, total in totals), totals
    await _no_drift(settings, engine, es)
    live = await db.fetchval("SELECT count(*) FROM jobs WHERE deleted_at IS NULL")
    assert await index.live_count(es, settings.search.index_alias) == live


class Crash(Exception):
    """Stands for the reindex process dying mid-backfill."""


async def test_a_crashed_reindex_resumes_into_the_same_index_from_its_cursor(settings, db, es, engine):
    settings = settings.model_copy(update={"search": settings.search.model_copy(update={"reindex_batch": 50})})
    await conftest.load_jobs(db, 260)
    pages = []

    async def crash_after_two(phase: str, rows: int) -> None:
        pages.append((phase, rows))
        if len(pages) == 2:
            raise Crash()

    with pytest.raises(Crash):
        await reindex.reindex(settings, engine, es, on_page=crash_after_two)
    state = await db.fetchrow("SELECT index_name, phase, cursor, docs, finished_at FROM search_index_state")
    assert (state["phase"], state["docs"], state["finished_at"]) == ("backfill", 100, None)

    read_again = []

    async def count(phase: str, rows: int) -> None:
        read_again.append((phase, rows))

    report = await reindex.reindex(settings, engine, es, on_page=count)
    assert report.resumed and report.index == state["index_name"]
    assert sum(n for phase, n in read_again if phase == "backfill") == 160, "only the rows after the cursor were read"
    assert report.backfilled == 260 == report.index_live == report.table_live
    assert await index.behind(es, settings.search.index_alias) == [report.index]
    assert await db.fetchval("SELECT phase FROM search_index_state WHERE index_name = $1", report.index) == "done"


async def test_only_one_reindex_runs_at_a_time(settings, db, es, engine):
    await conftest.load_jobs(db, 30)
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(phase: str, rows: int) -> None:
        entered.set()
        await release.wait()

    first = asyncio.create_task(reindex.reindex(settings, engine, es, on_page=hold))
    await asyncio.wait_for(entered.wait(), 20)
    with pytest.raises(reindex.ReindexError, match="another reindex is running"):
        await reindex.reindex(settings, engine, es)
    release.set()
    assert (await asyncio.wait_for(first, 60)).index_live == 30
