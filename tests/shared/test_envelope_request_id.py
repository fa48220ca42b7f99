"""The envelope's optional request id (shared/messages.py): signed when present, absent from the wire when not, well-formed or refused."""

from __future__ import annotations

import json

import pytest

from shared import messages, signing

KEY = signing.new_key()
RESULT = messages.JobResult(job_id="j1", ok=True)


def test_without_a_request_id_the_wire_has_no_such_key_as_before_the_field() -> None:
    body = signing.verify(messages.encode(messages.EventKind.JOB_RESULT, "h1", 1, RESULT, KEY), KEY)
    assert set(body) == {"id", "kind", "host_id", "seq", "issued_at", "payload"}
    assert messages.decode_envelope(body).request_id is None


def test_a_request_id_is_covered_by_the_signature() -> None:
    raw = messages.encode(messages.EventKind.JOB_RESULT, "h1", 1, RESULT, KEY, request_id="req-12345678")
    assert messages.decode_envelope(signing.verify(raw, KEY)).request_id == "req-12345678"
    forged = json.loads(raw)
    forged["request_id"] = "req-87654321"
    with pytest.raises(signing.SignatureError):
        signing.verify(json.dumps(forged).encode(), KEY)


@pytest.mark.parametrize("bad", ["short", "with space 12345", "line\nbreak-1234", "x" * 129])
def test_a_malformed_request_id_is_refused(bad: str) -> None:
    body = signing.verify(messages.encode(messages.EventKind.JOB_RESULT, "h1", 1, RESULT, KEY), KEY)
    with pytest.raises(messages.MessageError, match="request_id"):
        messages.decode_envelope({**body, "request_id": bad})


def test_agents_announce_the_request_id_feature_in_heartbeats() -> None:
    assert messages.REQUEST_ID_FEATURE in messages.FEATURES
    hb = messages.Heartbeat(agent_version="x", uptime_s=1, cpus=1, memory_mb=1, features=list(messages.FEATURES))
    assert hb.model_dump(mode="json")["features"] == ["request_id"]


def test_a_workspace_state_names_its_job_only_when_it_has_one() -> None:
    plain = messages.WorkspaceState(workspace_id="w1", state="running")
    assert "job_id" not in plain.model_dump(mode="json"), "an older control plane refuses the key, even as null"
    named = messages.WorkspaceState(workspace_id="w1", state="running", job_id="j1")
    raw = messages.encode(messages.EventKind.WORKSPACE_STATE, "h1", 1, named, KEY, request_id="req-12345678")
    _, payload = messages.parse_event(messages.decode_envelope(signing.verify(raw, KEY)))
    assert isinstance(payload, messages.WorkspaceState) and payload.job_id == "j1"
