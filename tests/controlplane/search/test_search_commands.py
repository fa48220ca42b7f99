"""The sync and search commands: one line naming the setting when Elasticsearch is missing; `search reindex` run as the installed command."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import sys

import pytest
from click import testing

from controlplane import cli
from controlplane.search import index, reindex
from tests.controlplane.search import conftest

COMMAND = pathlib.Path(sys.executable).with_name("a4c-controlplane")


@pytest.mark.parametrize("argv", [["sync"], ["search", "reindex"], ["search", "check"], ["search", "check", "--repair"]])
def test_without_an_elasticsearch_url_the_command_exits_2_naming_the_setting(argv, monkeypatch):
    monkeypatch.delenv("A4C_SEARCH__ELASTICSEARCH_URL", raising=False)
    result = testing.CliRunner().invoke(cli.main, argv, env={"A4C_CONFIG": ""})
    assert result.exit_code == 2
    assert "search.elasticsearch_url" in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_an_unreachable_elasticsearch_is_one_error_line_and_exit_1(monkeypatch, database_url):
    env = {"A4C_CONFIG": "", "A4C_SEARCH__ELASTICSEARCH_URL": "http://127.0.0.1:9", "A4C_DATABASE__URL": database_url, "A4C_LOGGING__LEVEL": "ERROR"}
    result = testing.CliRunner().invoke(cli.main, ["search", "check"], env=env)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "search.elasticsearch_url" in errors[0]


async def test_search_reindex_run_as_a_command_swaps_the_alias_to_a_new_index_holding_every_job_and_prints_its_summary(
    settings, db, es, engine, database_url, elasticsearch_url
):
    alias = settings.search.index_alias
    await conftest.load_jobs(db, 50)
    await reindex.reindex(settings, engine, es)
    [old] = await index.behind(es, alias)
    # No sync consumer runs here: the old index misses what changes from now on.
    await conftest.load_jobs(db, 130, seed=7)
    await db.execute("UPDATE jobs SET reason = 'changed after the first index' WHERE id IN (SELECT id FROM jobs ORDER BY id LIMIT 20)")
    await db.execute("UPDATE jobs SET deleted_at = now() WHERE id IN (SELECT id FROM jobs ORDER BY id DESC LIMIT 3)")

    env = {name: value for name, value in os.environ.items() if not name.startswith("A4C_")}
    env.update(
        {
            "A4C_CONFIG": "",
            "A4C_DATABASE__URL": database_url,
            "A4C_SEARCH__ELASTICSEARCH_URL": elasticsearch_url,
            "A4C_SEARCH__INDEX_ALIAS": alias,
            "A4C_SEARCH__SHARDS": "1",
            "A4C_SEARCH__REPLICAS": "0",
            "A4C_SEARCH__REINDEX_BATCH": "40",  # several keyset pages
            "A4C_LOGGING__LEVEL": "INFO",
            "A4C_LOGGING__FORMAT": "text",
        }
    )
    process = await asyncio.create_subprocess_exec(
        str(COMMAND), "search", "reindex", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 180)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    out, err = out.decode(), err.decode()
    assert process.returncode == 0, (out, err)

    table_live = await db.fetchval("SELECT count(*) FROM jobs WHERE deleted_at IS NULL")
    assert table_live == 177
    [summary] = out.splitlines()
    found = re.fullmatch(
        rf"reindexed into (?P<new>\S+): 180 rows backfilled, \d+ replayed, \d+ repaired; "
        rf"{table_live} live jobs in the index, {table_live} in the table; alias {re.escape(alias)} -> (?P=new); removed {re.escape(old)}",
        summary,
    )
    assert found, summary
    new = found["new"]
    # Progress on stderr (the log): what it builds, and the swap.
    assert f"reindex: building {new}" in err and f"reindex: alias {alias} now points at {new} (was {old})" in err, err

    assert new != old and await index.behind(es, alias) == [new]
    assert not await es.indices.exists(index=old)
    await index.refresh(es, alias)
    hits = await es.search(index=alias, query={"bool": {"must_not": [{"term": {"deleted": True}}]}}, size=1000, source=["version"])
    indexed = {h["_id"]: h["_source"]["version"] for h in hits["hits"]["hits"]}
    rows = await db.fetch("SELECT id, version FROM jobs WHERE deleted_at IS NULL")
    assert indexed == {str(r["id"]): r["version"] for r in rows}
