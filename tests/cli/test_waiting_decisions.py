"""The pure decisions behind --wait and --follow: when a wait is over, when it failed, what part of a log is new."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from a4c import progress


def _job(status: str, **extra) -> dict:
    return {"id": "5e6f7a8b-0000-4000-8000-000000000000", "status": status, "reason": "", "error": None, **extra}


def _ws(state: str, **extra) -> dict:
    return {"id": "w", "name": "dev", "observed_state": state, "state_reason": "", "published_ports": [], **extra}


def test_a_workspace_wait_is_done_only_when_the_job_succeeded_and_the_state_is_reached():
    assert progress.workspace_verdict("running", _job("succeeded"), _ws("running")).done
    assert not progress.workspace_verdict("running", _job("running"), _ws("running")).over
    assert not progress.workspace_verdict("running", _job("succeeded"), _ws("creating")).over
    assert not progress.workspace_verdict("running", _job("pending", reason="no eligible host"), _ws("pending")).over


def test_a_failed_job_or_a_stuck_workspace_ends_the_wait_with_the_reason():
    failed = progress.workspace_verdict("running", _job("failed", error="image not found"), _ws("pending"))
    assert failed.failure == "job 5e6f7a8b-0000-4000-8000-000000000000 failed: image not found"
    lost = progress.workspace_verdict("running", _job("running"), _ws("lost", state_reason="host h1 is down"))
    assert lost.failure == "workspace dev is lost: host h1 is down"
    assert progress.workspace_verdict("stopped", _job("succeeded"), _ws("exited")).failure


def test_the_stuck_state_a_start_is_sent_to_change_does_not_end_its_wait():
    # Found from outside: `a4c workspaces start NAME --wait` on a failed workspace ended at 0.0 s with the old failure.
    old = _ws("failed", state_reason="crash loop", version=7)
    assert not progress.workspace_verdict("running", _job("dispatched"), old, accepted_version=7).over
    again = _ws("failed", state_reason="crash loop again", version=9)
    assert progress.workspace_verdict("running", _job("running"), again, accepted_version=7).failure == "workspace dev is failed: crash loop again"
    # A succeeded job whose state report is still to come: still waiting (a failed job ends it, above).
    assert not progress.workspace_verdict("running", _job("succeeded"), old, accepted_version=7).over
    assert progress.workspace_verdict("running", _job("dispatched"), _ws("running", version=8), accepted_version=7) == progress.WAITING


def test_a_delete_wait_is_done_when_the_job_succeeded_or_the_workspace_is_gone():
    assert progress.workspace_verdict("deleted", _job("succeeded"), _ws("deleting")).done
    assert progress.workspace_verdict("deleted", _job("running"), None).done
    assert not progress.workspace_verdict("deleted", _job("running"), _ws("deleting")).over
    assert progress.workspace_verdict("running", _job("running"), None).failure == "the workspace was deleted while waiting for it to be running"


def test_a_progress_line_shows_the_job_status_and_reason_then_the_workspace():
    line = progress.workspace_line(
        _job("pending", reason="no eligible host: h1 is cordoned"), _ws("pending", state_reason="no eligible host: h1 is cordoned")
    )
    assert line == "job pending: no eligible host: h1 is cordoned; workspace pending"
    queued = _job("pending", reason="no eligible host: h1 is cordoned; 2nd in the queue of 3")
    assert progress.workspace_line(queued, _ws("pending", state_reason="no eligible host: h1 is cordoned")) == (
        "job pending: no eligible host: h1 is cordoned; 2nd in the queue of 3; workspace pending"
    ), "the workspace's reason is not repeated after the job's, which says the same and its place in the queue"
    running = _ws("running", published_ports=[{"container_port": 22, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 32768}])
    assert progress.workspace_line(_job("succeeded", host_name="h1"), running) == "job succeeded on h1; workspace running (127.0.0.1:32768->22/tcp)"
    placed = _job("dispatched", host_name="h1", reason="h1: least disk used of 2 eligible hosts")
    assert progress.workspace_line(placed, _ws("creating")) == "job dispatched: h1: least disk used of 2 eligible hosts; workspace creating"


def test_a_build_verdict_carries_the_error_line_and_the_host():
    assert progress.build_verdict(_job("succeeded")).done
    assert not progress.build_verdict(_job("running")).over
    failed = progress.build_verdict(_job("failed", host_name="h1", error="write /var/cache: no space left on device"))
    assert failed.failure == "build on h1 failed: write /var/cache: no space left on device"


def test_the_new_part_of_a_growing_log_is_what_was_appended():
    assert progress.log_delta("", "step 1\n") == "step 1\n"
    assert progress.log_delta("step 1\n", "step 1\nstep 2\n") == "step 2\n"
    assert progress.log_delta("step 1\n", "step 1\n") == ""


@given(st.text(alphabet="abc\n", min_size=1, max_size=3000), st.text(alphabet="xyz ", min_size=1, max_size=600), st.data())
def test_a_log_that_slid_out_of_the_window_still_yields_exactly_the_new_text(shown, added, data):
    # The API keeps right(log, cap) with cap >= what was shown: appending `added`
    # drops at most as many characters from the front as were added (here: not all that was shown).
    # The alphabets differ: a log that repeats itself exactly is ambiguous to anyone.
    dropped = data.draw(st.integers(0, min(len(added), len(shown) - 1)))
    tail = (shown + added)[dropped:]
    assert progress.log_delta(shown, tail) == added


def test_a_gap_bigger_than_the_window_is_said_and_the_whole_tail_printed():
    shown = "old line\n" * 200
    tail = "new line\n" * 200
    assert progress.log_delta(shown, tail) == progress.GAP + tail


def test_a_short_overlap_after_a_big_burst_is_still_found():
    shown = "".join(f"line {i}\n" for i in range(100))
    tail = shown[-20:] + "".join(f"next {i}\n" for i in range(100))
    assert progress.log_delta(shown, tail) == tail[20:]
