"""The PostgreSQL fallback searches through indexes: EXPLAIN shows no sequential scan of jobs.

The table gets enough generated rows (and fresh statistics) that the planner
would choose a sequential scan whenever no index serves the query.
"""

from __future__ import annotations

import datetime
import json
import uuid

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from controlplane.search import check, postgres, reindex
from controlplane.search.domain import grammar, results
from tests.harness import jobgen

ROWS = 30_000
# The default total_limit is 1 % of a million jobs; the same share of this table.
CAP = ROWS // 100
NOW = jobgen.BASE

PAGE_QUERIES = [
    "",
    "status:failed",
    "status:succeeded",
    "kind:host_cleanup",
    "host:h07",
    "user:grace",
    "image:rust-dev",
    "created>=2025-02-20",
    "finished>=2025-02-25 sort:finished_at",
    "sort:-updated_at",
    "status:failed host:h02",
    '"no space left"',
    "oomkilled",
    '"could not resolve host" user:alice',
]
# Totals and facets read at most total_limit + 1 matches, newest first, so
# even the broadest query has no reason to scan the table.
FACET_QUERIES = PAGE_QUERIES


pytestmark = pytest.mark.asyncio(loop_scope="module")


# One database for the module: the big table takes seconds to load and every test only reads plans from it.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def big_table(module_database_url):
    conn = await asyncpg.connect(module_database_url)
    await conn.execute("TRUNCATE jobs, outbox")
    await conn.executemany(
        "INSERT INTO users (id, name, role) VALUES ($1, $2, 'user') ON CONFLICT (id) DO NOTHING", [(u.id, u.name) for u in jobgen.users()]
    )
    rows = list(jobgen.jobs(ROWS, seed=21))
    await conn.copy_records_to_table("jobs", records=rows, columns=list(jobgen.COLUMNS))
    await conn.execute("ANALYZE jobs")
    yield conn
    await conn.close()


async def _plan(conn, statement) -> str:
    """The plan of ``statement`` with its parameters bound, as the search sends it (an unnamed statement gets a custom plan)."""
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())
    values = [compiled.params[name] for name in compiled.positiontup]
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {compiled}", *values)
    return json.dumps(json.loads(plan))


_STREAMING = {"Subquery Scan", "Result", "Limit"}


def _seq_scans_of_jobs(plan: str, *, allow_under_limit: bool = False) -> list[dict]:
    """Sequential scans of jobs; with ``allow_under_limit``, not those a Limit stops early (nothing in between buffers)."""
    found = []

    def walk(node, bounded: bool):
        if isinstance(node, dict):
            kind = node.get("Node Type")
            if kind == "Seq Scan" and node.get("Relation Name") == "jobs" and not (allow_under_limit and bounded):
                found.append(node)
            if kind is not None:
                bounded = kind == "Limit" or (bounded and kind in _STREAMING)
            for value in node.values():
                walk(value, bounded)
        elif isinstance(node, list):
            for value in node:
                walk(value, bounded)

    walk(json.loads(plan), False)
    return found


@pytest.mark.parametrize("owner", [None, "alice"])
async def test_every_page_of_a_search_is_read_through_an_index(big_table, owner):
    owner_id = str(next(u.id for u in jobgen.users() if u.name == owner)) if owner else None
    for text in PAGE_QUERIES:
        q = grammar.parse(text, now=NOW)
        for after in (None, (NOW, str(uuid.UUID(int=0)))):
            plan = await _plan(big_table, postgres.page_statement(q, owner_id, results.Page(limit=50, after=after)))
            assert not _seq_scans_of_jobs(plan), f"{text!r} (owner {owner}, cursor {after is not None}): {plan}"


async def test_totals_and_facets_read_a_bounded_number_of_matches_through_indexes(big_table):
    for text in FACET_QUERIES:
        q = grammar.parse(text, now=NOW)
        plan = await _plan(big_table, postgres.facets_statement(q, None, "day", CAP))
        assert not _seq_scans_of_jobs(plan), f"{text!r}: {plan}"
        assert "jobs_" in plan, "an index of jobs is named in the plan"
        count = await _plan(big_table, postgres.count_statement(q, None, CAP))
        # Counting the first CAP + 1 matches may read rows in physical order
        # when matches are common: a scan the Limit ends early, never a full one.
        assert not _seq_scans_of_jobs(count, allow_under_limit=True), f"{text!r} (count): {count}"


async def test_the_text_query_is_folded_to_a_constant_and_read_through_the_gin_index(big_table):
    q = grammar.parse('"no space left" "is not a directory"', now=NOW)
    plan = await _plan(big_table, postgres.page_statement(q, None, results.Page(limit=50)))
    # a4c_text_query(:terms) is IMMUTABLE: with the bound terms the planner sees the tsquery itself (migration 0004).
    assert "'no' <-> 'space' <-> 'left' & 'is' <-> 'not' <-> 'a' <-> 'directori'" in plan.replace("''", "'"), plan
    assert "jobs_search" in plan and not _seq_scans_of_jobs(plan), plan


def _sorts(plan: str) -> list[str]:
    """The sort keys of every Sort node in the plan."""
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("Node Type") in {"Sort", "Incremental Sort"}:
                found.append(", ".join(node.get("Sort Key", [])))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(plan))
    return found


async def test_reindex_pages_walk_an_index_in_key_order_not_a_sort_of_the_table(big_table):
    # The pages select ``id::text AS id``: an unqualified ORDER BY id sorted by that text alias, which no
    # index serves, so every page of a backfill sorted the whole table (at a million jobs one page outlived
    # the 30 s statement timeout). Ordered by the uuid column, a page is an index range read.
    everything = {"after": str(uuid.UUID(int=0)), "limit": 2000}
    for statement, params in (
        (reindex._BACKFILL_PAGE, everything),
        (reindex._CHANGED_PAGE, {**everything, "since": NOW - datetime.timedelta(days=365)}),
    ):
        plan = await _plan(big_table, statement.bindparams(**params))
        assert not _seq_scans_of_jobs(plan) and not _sorts(plan), plan


async def test_the_drift_check_never_sorts_by_the_text_of_an_id(big_table):
    params = {"start": NOW - datetime.timedelta(days=30), "end": NOW, "after": str(uuid.UUID(int=0)), "limit": 1000}
    plan = await _plan(big_table, check._TABLE_ENTRIES.bindparams(**params))
    assert not [key for key in _sorts(plan) if "::text" in key], plan
