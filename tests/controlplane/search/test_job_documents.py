"""Job-sync messages become versioned index actions; bulk item results are classified by what to do next."""

from __future__ import annotations

import json

import pytest

from controlplane.search.domain import documents, mapping

JOB = {
    "id": "j1",
    "kind": "image_build",
    "status": "failed",
    "error": "No space left",
    "log_tail": "step 3",
    "version": 4,
    "created_at": "2025-01-01T00:00:00.123456+00:00",
    "updated_at": "2025-01-01T00:01:00+00:00",
    "deleted_at": None,
    "result": {"x": 1},
}


def _message(**fields) -> bytes:
    return json.dumps({"kind": "job.upsert", "id": "j1", "version": 4, "job": JOB, **fields}).encode()


def test_an_upsert_is_indexed_at_the_rows_version_with_external_versioning():
    change = documents.from_message(_message())
    header, source = change.action("jobs")
    assert header == {"index": {"_index": "jobs", "_id": "j1", "version": 4, "version_type": "external"}}
    assert source["text"] == "No space left step 3" and source["deleted"] is False and source["version"] == 4
    assert "result" not in source, "only mapped fields are sent (the mapping is strict)"
    assert set(source) <= set(mapping.mappings()["properties"])


def test_a_delete_is_a_tombstone_at_its_version_with_or_without_the_row():
    soft = documents.from_message(_message(kind="job.delete", version=5, job={**JOB, "deleted_at": "2025-01-02T00:00:00+00:00"}))
    assert soft.deleted and soft.doc["deleted"] is True and soft.version == 5
    purged = documents.from_message(json.dumps({"kind": "job.delete", "id": "j1", "version": 6}).encode())
    assert purged.doc == {"id": "j1", "version": 6, "deleted": True}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (json.dumps({"kind": "job.moved", "id": "j1", "version": 1}).encode(), "kind must be"),
        (json.dumps({"kind": "job.upsert", "id": "", "version": 1, "job": {}}).encode(), "id must be"),
        (json.dumps({"kind": "job.upsert", "id": "j1", "version": "3", "job": {}}).encode(), "version must be"),
        (json.dumps({"kind": "job.upsert", "id": "j1", "version": 0, "job": {}}).encode(), "version must be"),
        (json.dumps({"kind": "job.upsert", "id": "j1", "version": 1}).encode(), "without a job"),
        (None, "empty"),
    ],
)
def test_a_message_that_is_not_a_job_sync_message_is_undecodable_with_the_reason(value, why):
    with pytest.raises(documents.Undecodable, match=why):
        documents.from_message(value)


def test_only_the_newest_version_of_each_job_in_a_batch_is_sent():
    changes = [documents.from_message(_message(version=v)) for v in (3, 7, 5)]
    assert [c.version for c in documents.newest(changes)] == [7]


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (201, None, documents.Outcome.INDEXED),
        (200, None, documents.Outcome.INDEXED),
        (409, {"type": "version_conflict_engine_exception"}, documents.Outcome.STALE),
        (429, {"type": "es_rejected_execution_exception"}, documents.Outcome.RETRY),
        (503, {"type": "unavailable_shards_exception"}, documents.Outcome.RETRY),
        (404, {"type": "index_not_found_exception"}, documents.Outcome.RETRY),
        (400, {"type": "mapper_parsing_exception"}, documents.Outcome.REJECTED),
        (400, {"type": "strict_dynamic_mapping_exception"}, documents.Outcome.REJECTED),
    ],
)
def test_bulk_item_results_are_indexed_stale_retried_or_rejected(status, error, outcome):
    assert documents.outcome(status, error) is outcome


def test_the_reason_of_a_rejection_keeps_the_cause():
    error = {
        "type": "mapper_parsing_exception",
        "reason": "failed to parse field [attempts]",
        "caused_by": {"type": "illegal_argument_exception", "reason": 'For input string: "many"'},
    }
    assert (
        documents.reason(error)
        == 'mapper_parsing_exception: failed to parse field [attempts] (caused by illegal_argument_exception: For input string: "many")'
    )


def test_the_template_takes_shards_replicas_and_refresh_from_the_settings():
    body = mapping.template("jobs", shards=3, replicas=1, refresh_interval=1.5)
    settings = body["template"]["settings"]
    assert body["index_patterns"] == ["jobs-*"]
    assert (settings["number_of_shards"], settings["number_of_replicas"], settings["refresh_interval"]) == (3, 1, "1500ms")
    properties = body["template"]["mappings"]["properties"]
    assert properties["status"] == {"type": "keyword"} and properties["created_at"] == {"type": "date_nanos"}
    assert properties["text"]["analyzer"] == properties["error"]["analyzer"] == "job_text"
    assert body["template"]["mappings"]["dynamic"] == "strict"
