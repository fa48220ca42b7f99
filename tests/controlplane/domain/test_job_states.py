"""The job state machine (controlplane/domain/jobs.py): every move, and what a person may cancel."""

from __future__ import annotations

import pytest

from controlplane.domain import jobs
from controlplane.domain.jobs import JobKind as K
from controlplane.domain.jobs import JobStatus as S

ALLOWED = {
    (S.PENDING, S.PENDING),
    (S.PENDING, S.QUEUED),
    (S.PENDING, S.DISPATCHED),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.CANCELLED),
    (S.QUEUED, S.PENDING),
    (S.QUEUED, S.QUEUED),
    (S.QUEUED, S.DISPATCHED),
    (S.QUEUED, S.FAILED),
    (S.QUEUED, S.CANCELLED),
    (S.DISPATCHED, S.PENDING),
    (S.DISPATCHED, S.QUEUED),
    (S.DISPATCHED, S.DISPATCHED),
    (S.DISPATCHED, S.RUNNING),
    (S.DISPATCHED, S.SUCCEEDED),
    (S.DISPATCHED, S.FAILED),
    (S.DISPATCHED, S.CANCELLED),
    (S.RUNNING, S.PENDING),
    (S.RUNNING, S.QUEUED),
    (S.RUNNING, S.DISPATCHED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
}


@pytest.mark.parametrize("old", list(S))
@pytest.mark.parametrize("new", list(S))
def test_every_move_is_allowed_exactly_when_the_table_says(old, new):
    if (old, new) in ALLOWED:
        jobs.check_move(old, new)
    else:
        with pytest.raises(jobs.IllegalMove, match=f"from {old.value} to {new.value}"):
            jobs.check_move(old.value, new.value)


def test_final_states_are_exactly_the_ones_nothing_leaves():
    assert {s for s in S if s.final} == {s for s in S if not jobs.MOVES[s]} == {S.SUCCEEDED, S.FAILED, S.CANCELLED}


@pytest.mark.parametrize(
    ("kind", "status", "refusal"),
    [
        (K.IMAGE_BUILD, S.PENDING, None),
        (K.IMAGE_BUILD, S.QUEUED, None),
        (K.IMAGE_BUILD, S.DISPATCHED, None),
        (K.IMAGE_BUILD, S.RUNNING, None),
        (K.HOST_CLEANUP, S.RUNNING, None),
        (K.IMAGE_BUILD, S.SUCCEEDED, "the job has already ended (succeeded)"),
        (K.HOST_CLEANUP, S.CANCELLED, "the job has already ended (cancelled)"),
        (K.WORKSPACE_CREATE, S.PENDING, "a workspace's jobs follow the workspace: stop or delete the workspace dev instead"),
        (K.WORKSPACE_STOP, S.RUNNING, "a workspace's jobs follow the workspace: stop or delete the workspace dev instead"),
        (K.WORKSPACE_DELETE, S.FAILED, "the job has already ended (failed)"),
    ],
)
def test_who_may_cancel_what(kind, status, refusal):
    assert jobs.cancel_refusal(kind, status, workspace="dev") == refusal


@pytest.mark.parametrize(
    ("attempts", "limit", "expected"),
    [
        (1, 5, jobs.Retry(attempt=2, delay=10.0)),
        (2, 5, jobs.Retry(attempt=3, delay=20.0)),
        (4, 5, jobs.Retry(attempt=5, delay=60.0)),  # 80 s, capped
        (5, 5, jobs.GiveUp(attempts=5)),
        (7, 5, jobs.GiveUp(attempts=7)),
        (0, 1, jobs.Retry(attempt=1, delay=10.0)),
    ],
)
def test_one_retry_policy_backs_off_doubling_to_a_cap_then_gives_up(attempts, limit, expected):
    assert jobs.next_attempt(attempts, limit, backoff=10.0, backoff_max=60.0) == expected
