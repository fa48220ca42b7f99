"""The command gate: each way a command can be bad is rejected with its own reason, before anything in it is trusted."""

from __future__ import annotations

import json

import pytest

from agent.domain import verification as v
from shared import messages, signing

KEY = signing.new_key()
HOST = "host-a"
NOW = 1_700_000_000.0


def _raw(
    *,
    key: str | None = KEY,
    host_id: str = HOST,
    issued_at: float = NOW,
    payload: dict | None = None,
    id: str = "cmd-1",
    kind: str = "workspace.delete",
) -> bytes:
    body = {
        "id": id,
        "kind": kind,
        "host_id": host_id,
        "seq": 1,
        "issued_at": issued_at,
        "payload": payload if payload is not None else {"job_id": "job-1", "workspace_id": "ws-1"},
    }
    return signing.sign(body, key) if key else signing.canonical(body)


def _check(raw: bytes, seen: set[str] = frozenset()) -> v.Accepted | v.Rejected:  # type: ignore[assignment]
    return v.check(raw, key=KEY, host_id=HOST, now=NOW, replay_window=3600, max_skew=300, seen=seen)


def test_a_good_command_is_accepted_with_its_parsed_payload() -> None:
    verdict = _check(_raw())
    assert isinstance(verdict, v.Accepted)
    assert verdict.kind is messages.CommandKind.WORKSPACE_DELETE
    assert verdict.payload == messages.WorkspaceRef(job_id="job-1", workspace_id="ws-1")
    assert verdict.job_id == "job-1"


def test_a_command_without_a_job_id_uses_its_own_id_as_the_job() -> None:
    verdict = _check(_raw(payload={"workspace_id": "ws-1"}))
    assert isinstance(verdict, v.Accepted) and verdict.job_id == "cmd-1"


@pytest.mark.parametrize(
    ("raw", "seen", "reason"),
    [
        (_raw(key=None), set(), v.UNSIGNED),
        (b"not json", set(), v.UNSIGNED),
        (b"[1, 2]", set(), v.UNSIGNED),
        (_raw(key=signing.new_key()), set(), v.BAD_SIGNATURE),
        (_raw(host_id="host-b"), set(), v.WRONG_HOST),
        (_raw(), {"cmd-1"}, v.REPLAYED),
        (_raw(issued_at=NOW - 3601), set(), v.EXPIRED),
        (_raw(issued_at=NOW + 301), set(), v.FROM_THE_FUTURE),
        (_raw(kind="workspace.explode"), set(), v.INVALID),
    ],
    ids=["unsigned", "not-json", "not-an-object", "wrong-key", "other-host", "seen-id", "too-old", "too-new", "unknown-kind"],
)
def test_each_bad_command_is_rejected_for_its_reason(raw: bytes, seen: set[str], reason: str) -> None:
    verdict = _check(raw, seen)
    assert isinstance(verdict, v.Rejected) and verdict.reason == reason


def test_tampering_with_any_field_after_signing_breaks_the_signature() -> None:
    body = json.loads(_raw())
    body["payload"]["workspace_id"] = "ws-someone-elses"
    verdict = _check(json.dumps(body).encode())
    assert isinstance(verdict, v.Rejected) and verdict.reason == v.BAD_SIGNATURE and verdict.command_id == "cmd-1"


def test_a_rejection_before_the_signature_checks_out_names_no_job() -> None:
    verdict = _check(_raw(key=signing.new_key(), payload={"job_id": "job-x", "workspace_id": "ws"}))
    assert isinstance(verdict, v.Rejected) and verdict.job_id is None


def test_a_signed_command_with_a_bad_payload_names_the_field_and_its_job() -> None:
    verdict = _check(_raw(kind="workspace.create", payload={"job_id": "job-7", "spec": {"workspace_id": "w"}}))
    assert isinstance(verdict, v.Rejected) and verdict.reason == v.INVALID
    assert verdict.job_id == "job-7"
    assert verdict.detail.startswith("payload.spec.")


def test_a_malformed_envelope_is_rejected_as_malformed() -> None:
    raw = signing.sign({"id": "x", "kind": "workspace.delete", "host_id": HOST, "payload": {}}, KEY)  # no seq
    verdict = _check(raw)
    assert isinstance(verdict, v.Rejected) and verdict.reason == v.MALFORMED and "seq" in verdict.detail


def test_the_seen_set_keeps_only_ids_inside_the_window_newest_first_and_bounded() -> None:
    seen = {"old": NOW - 4000, "a": NOW - 30, "b": NOW - 20, "c": NOW - 10}
    assert v.prune_seen(seen, now=NOW, replay_window=3600, max_entries=10) == {"c": NOW - 10, "b": NOW - 20, "a": NOW - 30}
    assert v.prune_seen(seen, now=NOW, replay_window=3600, max_entries=2) == {"c": NOW - 10, "b": NOW - 20}
