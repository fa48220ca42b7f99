"""``search check`` finds the days where the index and the table differ, and ``--repair`` makes them equal again."""

from __future__ import annotations

import datetime

from controlplane.search import check, commands, index, reindex
from controlplane.search.domain import drift
from tests.controlplane.search import conftest
from tests.harness import jobgen

CREATED = jobgen.COLUMNS.index("created_at")


def _day(when: datetime.datetime) -> datetime.datetime:
    return when.astimezone(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def test_missing_stale_purged_and_deleted_jobs_are_found_per_day_and_repaired(settings, db, es, engine):
    rows = await conftest.load_jobs(db, 80)
    await reindex.reindex(settings, engine, es)
    clean = await check.check(settings, engine, es, rounds=1)
    assert clean.clean and clean.buckets > 10
    alias = settings.search.index_alias
    # Four kinds of drift, each on a job of its own; no consumer runs here, so
    # every change after the reindex is a message that never arrived.
    (missing,) = await conftest.load_jobs(db, 1, seed=77)
    stale, purged, deleted = rows[1], rows[2], rows[3]
    await db.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = $1", stale[0])
    await db.execute("DELETE FROM jobs WHERE id = $1", purged[0])
    await db.execute("UPDATE jobs SET deleted_at = now() WHERE id = $1", deleted[0])
    in_flight = await check.check(settings, engine, es, settle=0.1, rounds=1)
    assert in_flight.clean, "changes whose messages are still in the outbox are in flight, not drift"
    await db.execute("UPDATE outbox SET published_at = now()")  # published, then lost on the way

    found = await check.check(settings, engine, es, settle=0.1, rounds=2)
    assert {d.bucket for d in found.drifted} == {_day(r[CREATED]) for r in (missing, stale, purged, deleted)}

    repaired = await check.check(settings, engine, es, repair=True, settle=0.1, rounds=1)
    assert repaired.clean and (repaired.reindexed, repaired.tombstoned) == (3, 1)
    doc = (await es.get(index=alias, id=str(stale[0])))["_source"]
    assert doc["version"] == await db.fetchval("SELECT version FROM jobs WHERE id = $1", stale[0])
    assert (await es.get(index=alias, id=str(purged[0])))["_source"]["deleted"] is True
    assert (await es.get(index=alias, id=str(deleted[0])))["_source"]["deleted"] is True
    assert (await es.get(index=alias, id=str(missing[0])))["_source"]["deleted"] is False
    assert await index.live_count(es, alias) == 79


async def test_the_check_command_exits_1_on_drift_and_0_once_repaired(settings, db, es, engine, capsys):
    rows = await conftest.load_jobs(db, 20)
    await reindex.reindex(settings, engine, es)
    await db.execute("UPDATE jobs SET reason = 'changed behind the index' WHERE id = $1", rows[5][0])
    await db.execute("UPDATE outbox SET published_at = now()")  # published, then lost on the way
    assert await commands.run_check(settings) == 1
    assert "1 drifted" in capsys.readouterr().out
    assert await commands.run_check(settings, repair=True) == 0
    assert await commands.run_check(settings) == 0
    assert "0 drifted" in capsys.readouterr().out.splitlines()[-1]


def test_a_merge_of_both_sides_decides_each_repair():
    table = [drift.Entry("a", 3, False), drift.Entry("b", 2, False), drift.Entry("d", 5, True), drift.Entry("e", 1, False)]
    index = [
        drift.Entry("b", 1, False),
        drift.Entry("c", 4, False),
        drift.Entry("c2", 2, True),
        drift.Entry("d", 4, False),
        drift.Entry("e", 2, False),
    ]
    plan = drift.plan(table, index)
    assert plan.reindex == ["a", "b", "d"]
    assert plan.tombstone == [drift.Entry("c", 4, False)], "a tombstone is already right; a live extra job gets one"
    assert plan.ahead == ["e"]


def test_buckets_compare_on_count_version_sum_and_maximum():
    day = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    other = day + datetime.timedelta(days=1)
    same = {day: drift.Stats(3, 9, 4)}
    assert drift.compare(same, dict(same)) == []
    assert [d.bucket for d in drift.compare(same, {day: drift.Stats(3, 8, 4)})] == [day]
    assert [d.bucket for d in drift.compare(same, {**same, other: drift.Stats(1, 1, 1)})] == [other]
