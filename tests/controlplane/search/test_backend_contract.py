"""Elasticsearch and PostgreSQL answer every search identically: the same ids in the same order, the same totals and facets.

One data set (generated jobs, skewed like production, with creation-time ties)
is loaded into PostgreSQL and indexed by ``search reindex``; then each query
runs on both backends, page by page to the end, as an admin and as a user.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import engine as db_engine
from controlplane.search import client, elastic, postgres, reindex
from controlplane.search.domain import grammar, results
from controlplane.search.domain import query as query_mod
from tests.controlplane.search import conftest
from tests.harness import jobgen

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = jobgen.BASE
ROWS = 400
PAGE = 23
FACETS = 5

QUERIES = [
    # filters
    "",
    "status:failed",
    "status:failed,cancelled",
    "-status:succeeded",
    "kind:image_build",
    "kind:workspace_create,workspace_start status:running",
    "host:h01",
    "host:h01,h02,h03 -status:failed",
    "-host:h01",
    "user:alice",
    "user:bob,carol kind:image_build",
    "image:python-dev",
    "-image:python-dev",
    "workspace:alice-api",
    "-workspace:alice-api status:succeeded",
    # time ranges
    "created>=2025-02-01",
    "created<2025-01-01",
    "created:2025-02-14",
    "created>=2025-01-10 created<2025-01-20 status:failed",
    "finished>=2025-02-01",
    "finished<2025-01-15 kind:image_build",
    "since:3w",
    # full text
    "space",
    '"no space left"',
    '"no space left on device"',
    "device space",
    "connection refused",
    '"connection refused"',
    "OOMKilled",
    "oomkilled memory",
    "/var/lib/docker",
    '"manifest unknown"',
    "installing install",
    '"non-zero code"',
    "the",
    '"in a row" heartbeats',
    # phrases of common words keep every word: no stop words on either backend
    '"no such host"',
    '"is not a directory"',
    '"not found"',
    '"the build was"',
    "not",
    "zzzznotthere",
    "numpy status:failed",
    '"Could not resolve host" user:alice',
    "ERESOLVE host:h02,h03",
    "127.0.0.1",
    "layer 28",
    # sorts
    "sort:created_at",
    "sort:-updated_at",
    "sort:updated_at status:failed",
    "sort:-finished_at",
    "sort:finished_at kind:image_build",
    "sort:-finished_at space",
]


# (jobs, error): exact phrases of common words, then decoys holding the same words apart.
COMMON_WORDS = [
    (4, "dial tcp: lookup registry.internal on 10.0.0.2:53: no such host"),
    (3, "mkdir /work/app/config.yaml: is not a directory"),
    (3, "GET /v2/base/manifests/latest: 404 not found"),
    (2, "no space left on device; such is life on a4c.host"),
    (2, "it is a file, not the directory you wanted"),
    (2, "nothing found: the package is not in the index"),
]


# One database for the module: the jobs and their index are loaded once and every test only reads them.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loaded(module_database_url, elasticsearch_url, kafka_bootstrap, test_run_id):
    prefix = f"contract{uuid.uuid4().hex[:8]}"
    settings = conftest.make_settings(module_database_url, kafka_bootstrap, prefix, elasticsearch_url, facet_size=FACETS)
    conn = await asyncpg.connect(module_database_url)
    await conn.execute("TRUNCATE jobs, outbox, search_index_state")
    people = jobgen.users()
    await conn.executemany("INSERT INTO users (id, name, role) VALUES ($1, $2, 'user') ON CONFLICT (id) DO NOTHING", [(u.id, u.name) for u in people])
    await conftest.load_jobs(conn, ROWS, seed=11)
    # Errors made of common words, next to decoys with the same words apart.
    for offset, (count, text) in enumerate(COMMON_WORDS):
        await conn.execute(
            "UPDATE jobs SET error = $1, log_tail = log_tail || E'\\n' || $1 WHERE id IN (SELECT id FROM jobs ORDER BY id DESC OFFSET $2 LIMIT $3)",
            text,
            offset * 5,
            count,
        )
    # Some jobs soft-deleted: neither backend may show them.
    await conn.execute("UPDATE jobs SET deleted_at = now() WHERE id IN (SELECT id FROM jobs ORDER BY id LIMIT 15)")
    await conn.close()
    engine = sa_asyncio.create_async_engine(db_engine.async_url(module_database_url))
    es = client.create(settings.search)
    done = await reindex.reindex(settings, engine, es)
    assert done.index_live == done.table_live == ROWS - 15
    yield settings, engine, es, people
    for name in (await es.indices.get(index=f"{settings.search.index_alias}-*")).body:
        await es.indices.delete(index=name)
    await es.close()
    await engine.dispose()


async def _all_pages(backend, q: query_mod.Query, owner: str | None, interval: str):
    ids, firsts, cursor, pages = [], None, None, 0
    while True:
        page = results.Page(limit=PAGE, after=results.decode_after(cursor, q.sort), facets=True, interval=interval)
        found = await backend(q, owner, page)
        pages += 1
        ids += [j["id"] for j in found.jobs]
        firsts = firsts or found
        assert found.facets == firsts.facets and found.total == firsts.total, "facets and total describe the query, not the page"
        cursor = found.next_cursor
        if cursor is None:
            return ids, firsts, pages
        assert pages < 100, "pagination does not end"


@pytest.mark.parametrize("text", QUERIES)
@pytest.mark.parametrize("who", ["admin", "alice"])
async def test_both_backends_return_the_same_jobs_in_the_same_order_with_the_same_facets(loaded, text, who):
    settings, engine, es, people = loaded
    q = grammar.parse(text, now=NOW)
    owner = None if who == "admin" else str(next(p.id for p in people if p.name == who))
    interval = results.interval_for(q, NOW)

    async def on_es(q, owner, page):
        return await elastic.search(es, settings.search.index_alias, q, owner, page, facet_size=FACETS)

    async def on_pg(q, owner, page):
        return await postgres.search(engine, q, owner, page, facet_size=FACETS)

    es_ids, es_first, _ = await _all_pages(on_es, q, owner, interval)
    pg_ids, pg_first, _ = await _all_pages(on_pg, q, owner, interval)
    assert es_ids == pg_ids
    assert len(set(es_ids)) == len(es_ids) == es_first.total and es_first.total_exact
    assert es_first.facets == pg_first.facets
    assert es_first.jobs == pg_first.jobs, "the job fields render identically too"


async def test_the_contract_queries_are_not_trivially_empty(loaded):
    _settings, engine, _es, _people = loaded
    totals = {}
    for text in QUERIES:
        q = grammar.parse(text, now=NOW)
        found = await postgres.search(engine, q, None, results.Page(limit=1, facets=False), facet_size=FACETS)
        totals[text] = found.total
    empty = [t for t, n in totals.items() if n == 0]
    assert empty == ["zzzznotthere"], totals
    full_text = [t for t in QUERIES if t and ":" not in t and ">" not in t and "<" not in t]
    assert len(full_text) >= 12
    assert len({totals[t] for t in QUERIES}) > 20, "queries that all return the same count prove little"


@pytest.mark.parametrize("text", ["", "status:failed", "step"])
async def test_past_the_total_limit_both_backends_report_the_limit_as_a_lower_bound(loaded, text):
    settings, engine, es, _people = loaded
    q = grammar.parse(text, now=NOW)
    page = results.Page(limit=5, facets=True, interval="week", total_limit=20)
    on_es = await elastic.search(es, settings.search.index_alias, q, None, page, facet_size=FACETS)
    on_pg = await postgres.search(engine, q, None, page, facet_size=FACETS)
    assert (on_es.total, on_es.total_exact) == (on_pg.total, on_pg.total_exact) == (20, False)
    assert [j["id"] for j in on_es.jobs] == [j["id"] for j in on_pg.jobs]
    assert on_es.facets.complete and not on_pg.facets.complete
    assert sum(b.count for b in on_pg.facets.status) == 20, "PostgreSQL's facets describe the newest 20 matches"
    assert sum(b.count for b in on_es.facets.status) > 20, "Elasticsearch's describe every match"
