"""Choices both backends share: histogram interval, facet order, cursors, and how a job is rendered."""

from __future__ import annotations

import datetime
import uuid

import pytest

from controlplane.db import models
from controlplane.search.domain import cursors, grammar, requests, results
from controlplane.search.domain import query as query_mod

NOW = datetime.datetime(2025, 3, 1, 12, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("", "week"),
        ("since:2h", "minute"),
        ("since:2d", "hour"),
        ("since:30d", "day"),
        ("created>=2024-01-01", "week"),
        ("created>=2025-02-01 created<2025-02-02", "hour"),
    ],
)
def test_the_histogram_interval_follows_the_created_range(text, interval):
    assert results.interval_for(grammar.parse(text, now=NOW), NOW) == interval


def test_an_unknown_interval_is_an_error_naming_it():
    with pytest.raises(query_mod.QueryError) as caught:
        results.interval_for(query_mod.Query(), NOW, "year")
    assert caught.value.param == "interval"


def test_facet_buckets_are_ordered_by_count_then_by_value_in_byte_order():
    buckets = results.top([("b", 2), ("B", 2), ("a", 5), ("é", 2), ("z", 1), (None, 9), ("zero", 0)], 4)
    assert [(b.value, b.count) for b in buckets] == [("a", 5), ("B", 2), ("b", 2), ("é", 2)]


def test_a_cursor_carries_the_sort_value_and_the_job_id_and_refuses_anything_else():
    when = datetime.datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=datetime.UTC)
    job_id = str(uuid.uuid4())
    sort = query_mod.Sort()
    cursor = results.next_cursor([{"created_at": when, "id": job_id}, {"created_at": when, "id": "next"}], 1, sort)
    assert results.decode_after(cursor, sort) == (when, job_id)
    with pytest.raises(query_mod.CursorError):
        results.decode_after(cursors.encode(["x", "not-a-uuid"], sort=sort), sort)
    with pytest.raises(query_mod.CursorError):
        results.decode_after(cursor, query_mod.Sort("updated_at"))


def test_a_job_renders_the_same_from_an_es_source_and_a_postgres_row():
    job_id = uuid.uuid4()
    row = {
        "id": job_id,
        "status": models.JobStatus.FAILED,
        "kind": models.JobKind.IMAGE_BUILD,
        "version": 3,
        "created_at": datetime.datetime(2025, 1, 1, 1, 2, 3, 4, tzinfo=datetime.UTC),
        "finished_at": None,
    }
    source = {
        "id": str(job_id),
        "status": "failed",
        "kind": "image_build",
        "version": 3,
        "created_at": "2025-01-01T01:02:03.000004+00:00",
        "finished_at": None,
        "log_tail": "not shown",
    }
    assert results.job(row) == results.job(source)
    assert results.job(source)["created_at"] == "2025-01-01T01:02:03.000004Z" and "log_tail" not in results.job(source)


def test_an_excluding_filter_keeps_jobs_without_the_field_and_uuids_match_ids():
    host_id = str(uuid.uuid4())
    where = requests.where(grammar.parse(f"-host:h1,{host_id} workspace:w1", now=NOW), owner=None)["bool"]
    assert {"bool": {"should": [{"terms": {"host_name": ["h1"]}}, {"terms": {"host_id": [host_id]}}], "minimum_should_match": 1}} in where["must_not"]
    assert {"terms": {"workspace_name": ["w1"]}} in where["filter"]
    assert {"term": {"deleted": True}} in where["must_not"]


def test_a_missing_sort_value_continues_after_the_value_the_sort_gives_it():
    # Descending: the epoch (Elasticsearch refuses its own Long.MIN_VALUE sentinel in a date_nanos search_after).
    q = grammar.parse("sort:-finished_at", now=NOW)
    body = requests.body(q, None, results.Page(limit=5, after=(None, "abc")), facet_size=3)
    assert body["search_after"] == [0, "abc"]
    assert body["sort"] == [{"finished_at": {"order": "desc", "missing": 0}}, {"id": {"order": "desc"}}]
    ascending = requests.body(grammar.parse("sort:finished_at", now=NOW), None, results.Page(limit=5, after=(None, "abc")), facet_size=3)
    assert ascending["search_after"] == [requests.LONG_MAX, "abc"]
    assert ascending["sort"][0] == {"finished_at": {"order": "asc", "missing": requests.LONG_MAX}}
