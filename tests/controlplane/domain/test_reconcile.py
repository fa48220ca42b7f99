"""The reconcile plan moves one host toward the desired state; hosts_down decides liveness."""

import dataclasses
import datetime

import pytest

from controlplane import settings as cp_settings
from controlplane.domain import reconcile
from shared import messages

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
TAKEN = NOW - datetime.timedelta(seconds=5)
SETTINGS = cp_settings.ReconcilerSettings(orphan_grace=120, job_ack_timeout=60, job_max_attempts=5, report_only=False)
REPORT_ONLY = cp_settings.ReconcilerSettings(orphan_grace=120, job_ack_timeout=60, job_max_attempts=5, report_only=True)


def ago(seconds):
    return NOW - datetime.timedelta(seconds=seconds)


def ws(id="w1", desired="running", observed="running", container_id="c1", **kw):
    return reconcile.Workspace(id=id, desired=desired, observed=observed, container_id=container_id, **kw)


def ctr(container_id="c1", workspace_id="w1", state="running", **kw):
    return reconcile.Container(container_id=container_id, workspace_id=workspace_id, state=state, **kw)


def inv(*containers, taken_at=TAKEN):
    return reconcile.Inventory(host_id="h1", host_name="h12", taken_at=taken_at, containers=tuple(containers))


def job(id="j1", workspace_id="w1", dispatched=10, acked=None, lease=None, attempts=1, **kw):
    return reconcile.Job(
        id=id,
        kind=kw.pop("kind", "workspace_create"),
        workspace_id=workspace_id,
        dispatched_at=ago(dispatched),
        acknowledged_at=None if acked is None else ago(acked),
        lease_expires_at=None if lease is None else NOW + datetime.timedelta(seconds=lease),
        attempts=attempts,
        **kw,
    )


def plan(workspaces, inventory, settings=SETTINGS, **kw):
    return reconcile.plan(workspaces, inventory, NOW, settings, **kw)


def kinds(actions):
    return [type(a).__name__ for a in actions]


# --- workspaces --------------------------------------------------------------


def test_a_running_workspace_without_a_container_is_created():
    [action] = plan([ws(observed="creating", container_id=None, spec_version=3, name="dev")], inv())
    assert isinstance(action, reconcile.CreateContainer)
    assert (action.workspace_id, action.spec_version, action.report_only) == ("w1", 3, False)
    assert action.reason == "workspace dev (w1) should be running but host h12 has no container for it"
    assert action.idempotency_key == f"reconcile:h1:{TAKEN.isoformat()}:create:w1"


@pytest.mark.parametrize("state", ["exited", "created"])
def test_a_running_workspace_whose_container_is_not_running_is_started(state):
    actions = plan([ws(observed="exited")], inv(ctr(state=state)))
    assert kinds(actions) == ["StartContainer"]
    assert (actions[0].workspace_id, actions[0].container_id) == ("w1", "c1")
    assert actions[0].reason == f"workspace w1 should be running but its container is {state}"


def test_a_failed_workspace_whose_agent_stopped_it_is_left_alone_until_a_person_starts_it():
    # agent/crashes.py stopped it because it did not stay up: restarting it would only crash again.
    assert plan([ws(observed="failed")], inv(ctr(state="exited"))) == []
    [mark] = plan([ws(observed="failed")], inv(ctr(state="running")))
    assert isinstance(mark, reconcile.MarkObserved) and mark.state == "running"


def test_a_container_that_died_while_the_db_thought_it_running_is_recorded_then_started():
    actions = plan([ws(observed="running")], inv(ctr(state="exited")))
    assert kinds(actions) == ["MarkObserved", "StartContainer"]
    assert (actions[0].state, actions[0].container_id) == ("exited", "c1")


@pytest.mark.parametrize(("desired", "state"), [("running", "running"), ("running", "restarting"), ("running", "paused"), ("stopped", "exited")])
def test_a_workspace_in_its_desired_state_needs_nothing(desired, state):
    observed = "running" if state != "exited" else "stopped"
    assert plan([ws(desired=desired, observed=observed)], inv(ctr(state=state))) == []


@pytest.mark.parametrize("state", ["running", "restarting", "paused"])
def test_a_stopped_workspace_whose_container_runs_is_stopped(state):
    actions = plan([ws(desired="stopped", observed="running")], inv(ctr(state=state)))
    assert kinds(actions) == ["StopContainer"]
    assert actions[0].reason == f"workspace w1 should be stopped but its container is {state}"


def test_a_container_stopped_by_hand_is_recorded_as_stopped_when_it_was_meant_to_stop():
    [mark] = plan([ws(desired="stopped", observed="running")], inv(ctr(state="exited")))
    assert isinstance(mark, reconcile.MarkObserved)
    assert (mark.state, mark.container_id) == ("stopped", "c1")


def test_a_container_the_db_never_heard_of_is_recorded_when_the_result_message_was_lost():
    [mark] = plan([ws(observed="creating", container_id=None)], inv(ctr(container_id="c9")))
    assert (mark.workspace_id, mark.state, mark.container_id) == ("w1", "running", "c9")
    assert mark.reason == "host h12 shows container c9 running; the DB had creating with no container"
    assert mark.report_only is False


def test_a_deleted_workspace_has_its_containers_removed_without_grace():
    actions = plan([ws(desired="deleted", observed="deleting")], inv(ctr(first_seen=NOW), ctr("c2", state="exited")))
    assert kinds(actions) == ["RemoveContainer", "RemoveContainer"]
    assert [(a.container_id, a.orphan) for a in actions] == [("c1", False), ("c2", False)]
    assert actions[0].reason == "workspace w1 is deleted"


@pytest.mark.parametrize(("observed", "expected"), [("deleting", ["MarkObserved"]), ("deleted", [])])
def test_a_deleted_workspace_without_a_container_is_recorded_deleted_once(observed, expected):
    actions = plan([ws(desired="deleted", observed=observed)], inv())
    assert kinds(actions) == expected
    if actions:
        assert (actions[0].state, actions[0].container_id) == ("deleted", None)


def test_a_container_already_being_removed_is_left_alone():
    assert plan([ws(desired="deleted", observed="deleting")], inv(ctr(state="removing"))) == []
    assert plan([ws()], inv(ctr(state="removing"))) == []


@pytest.mark.parametrize(("container_id", "expected"), [("c1", ["MarkObserved"]), (None, [])])
def test_a_stopped_workspace_whose_container_vanished_is_not_recreated(container_id, expected):
    actions = plan([ws(desired="stopped", observed="stopped", container_id=container_id)], inv())
    assert kinds(actions) == expected
    if actions:
        assert (actions[0].state, actions[0].container_id) == ("stopped", None)
        assert actions[0].reason == "container c1 is no longer on host h12"


def test_a_dead_container_of_a_running_workspace_is_removed_and_the_workspace_then_lost():
    actions = plan([ws(observed="exited")], inv(ctr(state="dead")))
    assert kinds(actions) == ["RemoveContainer"]
    assert "dead and cannot be started" in actions[0].reason
    [lost] = plan([ws(observed="exited")], inv())  # the next pass, with it gone
    assert (type(lost).__name__, lost.state) == ("MarkObserved", "lost")


@pytest.mark.parametrize("observed", ["running", "exited"])
def test_a_container_that_vanished_makes_its_workspace_lost_with_the_reason_and_is_never_recreated(observed):
    [action] = plan([ws(observed=observed, container_id="c1", name="dev")], inv())
    assert isinstance(action, reconcile.MarkObserved)
    assert (action.state, action.container_id) == ("lost", None)
    assert action.reason == "container c1 disappeared from host h12; its files are gone (a4c workspaces recreate dev starts it afresh)"
    # Once lost, later passes leave it to its owner.
    assert plan([ws(observed="lost", container_id=None, name="dev")], inv()) == []


def test_a_workspace_whose_create_never_produced_a_container_is_created_not_lost():
    assert kinds(plan([ws(observed="creating", container_id=None)], inv())) == ["CreateContainer"]


def test_duplicate_containers_keep_the_one_the_db_knows():
    actions = plan([ws(container_id="c2")], inv(ctr("c1"), ctr("c2"), ctr("c3", state="exited")))
    assert [(type(a).__name__, a.container_id) for a in actions] == [("RemoveContainer", "c1"), ("RemoveContainer", "c3")]
    assert actions[0].reason == "duplicate container of workspace w1; keeping c2"


def test_duplicate_containers_unknown_to_the_db_keep_a_running_one_else_the_newest():
    running = plan([ws(container_id=None, observed="creating")], inv(ctr("c1", state="exited"), ctr("c2")))
    assert [(type(a).__name__, a.container_id) for a in running] == [("RemoveContainer", "c1"), ("MarkObserved", "c2")]
    newest = plan(
        [ws(desired="stopped", observed="stopped", container_id=None)],
        inv(ctr("a", state="exited", created_at=ago(300)), ctr("b", state="exited", created_at=ago(60))),
    )
    assert [(type(a).__name__, a.container_id) for a in newest] == [("RemoveContainer", "a"), ("MarkObserved", "b")]


# --- lost and failed -----------------------------------------------------------


@pytest.mark.parametrize("observed", ["lost", "failed"])
def test_a_lost_or_failed_workspace_is_never_recreated_automatically(observed):
    assert plan([ws(observed=observed, container_id=None)], inv()) == []
    assert plan([ws(observed=observed, container_id="c1")], inv()) == []


def test_a_lost_workspace_whose_container_came_back_is_recorded():
    [mark] = plan([ws(observed="lost")], inv(ctr(state="running")))
    assert (mark.state, mark.container_id) == ("running", "c1")


# --- orphans -------------------------------------------------------------------


@pytest.mark.parametrize(("first_seen", "removed"), [(None, False), (0, False), (119, False), (120, True), (3600, True)])
def test_an_orphan_is_removed_only_after_the_grace_period(first_seen, removed):
    orphan = ctr("cx", workspace_id="w-gone", first_seen=None if first_seen is None else ago(first_seen))
    actions = plan([], inv(orphan))
    assert kinds(actions) == (["RemoveContainer"] if removed else [])
    if removed:
        assert (actions[0].container_id, actions[0].workspace_id, actions[0].orphan) == ("cx", "w-gone", True)
        assert "orphan: container cx of workspace w-gone, which is not placed on host h12" in actions[0].reason


def test_a_container_without_a_workspace_label_is_not_the_reconcilers_business():
    assert plan([], inv(ctr("build", workspace_id=None, first_seen=ago(86_400)))) == []


# --- report-only ---------------------------------------------------------------


def test_report_only_marks_every_corrective_action_but_still_records_observations():
    workspaces = [
        ws("w1", observed="creating", container_id=None),
        ws("w2", observed="running", container_id="c2"),
        ws("w3", desired="stopped", observed="running", container_id="c3"),
    ]
    inventory = inv(ctr("c2", "w2", state="exited"), ctr("c3", "w3"), ctr("cx", "gone", first_seen=ago(999)))
    jobs = [job("j9", workspace_id=None, kind="host_cleanup", dispatched=600, attempts=5)]
    actions = plan(workspaces, inventory, REPORT_ONLY, jobs=jobs)
    assert kinds(actions) == ["FailJob", "CreateContainer", "MarkObserved", "StartContainer", "StopContainer", "RemoveContainer"]
    assert [a.report_only for a in actions] == [True, True, False, True, True, True]
    assert [a.report_only for a in plan(workspaces, inventory, jobs=jobs)] == [False] * 6


# --- jobs ----------------------------------------------------------------------


def test_a_job_waiting_for_its_acknowledgement_shields_its_workspace():
    assert plan([ws(observed="creating", container_id=None)], inv(), jobs=[job(dispatched=30)]) == []


def test_a_job_not_acknowledged_in_time_is_reissued_with_the_next_attempt():
    actions = plan([ws(observed="creating", container_id=None)], inv(), jobs=[job(dispatched=95, attempts=2)])
    assert kinds(actions) == ["ReissueJob"]  # and no second CreateContainer beside it
    assert (actions[0].job_id, actions[0].attempt, actions[0].idempotency_key) == ("j1", 3, "reissue:j1:3")
    assert actions[0].reason == "workspace_create job not acknowledged by host h12 95s after dispatch (limit 60s); re-issuing, attempt 3 of 5"


def test_a_job_out_of_attempts_fails_with_an_error_a_person_can_act_on():
    [fail] = plan([], inv(), jobs=[job(dispatched=61, attempts=5)])
    assert isinstance(fail, reconcile.FailJob)
    assert (fail.job_id, fail.workspace_id) == ("j1", "w1")
    assert fail.error == (
        "host h12 did not acknowledge the workspace_create command after 5 attempts (60s each). "
        "Check that the a4c-agent service runs on h12 (systemctl status a4c-agent) and can reach Kafka, then retry the job."
    )


def test_a_jobs_own_max_attempts_overrides_the_setting():
    assert kinds(plan([], inv(), jobs=[job(dispatched=61, attempts=2, max_attempts=2)])) == ["FailJob"]
    assert kinds(plan([], inv(), jobs=[job(dispatched=61, attempts=4, max_attempts=9)])) == ["ReissueJob"]


@pytest.mark.parametrize(
    ("acked", "lease", "shielded"),
    [
        (30, None, True),  # acknowledged 30s ago, no lease: holds for job_ack_timeout
        (61, None, False),
        (600, 30, True),  # lease still held
        (600, -1, False),  # lease lapsed
    ],
)
def test_an_acknowledged_job_shields_its_workspace_while_its_lease_holds(acked, lease, shielded):
    actions = plan([ws(observed="creating", container_id=None)], inv(), jobs=[job(dispatched=acked + 1, acked=acked, lease=lease)])
    assert kinds(actions) == ([] if shielded else ["CreateContainer"])


def test_a_lost_message_heals_by_creating_again_idempotently():
    # The create was acknowledged long ago, yet no container appeared and no result came back.
    workspaces = [ws(observed="creating", container_id=None)]
    lost_job = [job(dispatched=3600, acked=3590)]
    first = plan(workspaces, inv(), jobs=lost_job)
    again = plan(workspaces, inv(), jobs=lost_job)
    assert kinds(first) == ["CreateContainer"]
    assert first == again  # two passes (or two instances) on one inventory: one key, one job
    later = plan(workspaces, inv(taken_at=NOW), jobs=lost_job)
    assert later[0].idempotency_key != first[0].idempotency_key  # a newer inventory may retry
    # Once the re-created job is in flight, the workspace is left to it.
    assert plan(workspaces, inv(taken_at=NOW), jobs=[*lost_job, job("j2", dispatched=1)]) == []


# --- stale inventory -----------------------------------------------------------


def test_an_inventory_older_than_the_last_command_plans_no_container_action():
    workspaces = [ws(observed="creating", container_id=None)]
    assert plan(workspaces, inv(), last_command_at=TAKEN + datetime.timedelta(seconds=1)) == []
    assert plan(workspaces, inv(), last_command_at=TAKEN) == []
    assert kinds(plan(workspaces, inv(), last_command_at=TAKEN - datetime.timedelta(seconds=1))) == ["CreateContainer"]
    reason = reconcile.stale_inventory(inv(), TAKEN)
    assert reason is not None and "not newer than the last command" in reason
    assert reconcile.stale_inventory(inv(), None) is None


def test_a_stale_inventory_still_times_out_jobs():
    actions = plan([ws(observed="creating", container_id=None)], inv(), jobs=[job(dispatched=90)], last_command_at=NOW)
    assert kinds(actions) == ["ReissueJob"]


def test_an_observation_newer_than_the_inventory_is_not_overwritten():
    # The DB heard "running" after this inventory said "exited": record nothing, still start (idempotent).
    actions = plan([ws(observed="running", observed_at=NOW)], inv(ctr(state="exited")))
    assert kinds(actions) == ["StartContainer"]


def test_the_plan_is_the_same_whatever_the_input_order():
    workspaces = [ws("w1", container_id=None, observed="creating"), ws("w2", observed="exited", container_id="c2")]
    containers = [ctr("c2", "w2", state="exited"), ctr("cx", "gone", first_seen=ago(999)), ctr("ca", "gone", first_seen=ago(999))]
    a = plan(workspaces, inv(*containers))
    b = plan(workspaces[::-1], inv(*containers[::-1]))
    assert a == b
    assert kinds(a) == ["CreateContainer", "StartContainer", "RemoveContainer", "RemoveContainer"]
    assert [a[2].container_id, a[3].container_id] == ["ca", "cx"]


# --- first-seen bookkeeping and the inventory message -----------------------------


def test_first_seen_times_are_kept_added_and_dropped():
    previous = {"old": ago(500), "gone": ago(900)}
    assert reconcile.track_first_seen(previous, ["old", "new"], NOW) == {"old": ago(500), "new": NOW}


def test_an_inventory_message_becomes_plan_input():
    message = messages.Inventory(
        containers=[
            messages.ContainerInfo(
                container_id="c1", workspace_id="w1", name="a4c-w1", image="base", state="running", created_at="2026-11-25T11:00:00.123456789Z"
            ),
            messages.ContainerInfo(container_id="c2", workspace_id=None, name="build", image="base", state="exited", created_at="garbage"),
        ],
        images=[],
    )
    built = reconcile.inventory_from_message("h1", TAKEN, message, {"c1": ago(60)}, host_name="h12")
    assert built.containers[0] == ctr(created_at=datetime.datetime(2026, 11, 25, 11, 0, 0, 123456, tzinfo=datetime.UTC), first_seen=ago(60))
    assert (built.containers[1].created_at, built.containers[1].first_seen) == (None, None)
    assert (built.host_id, built.host_name, built.taken_at) == ("h1", "h12", TAKEN)


# --- hosts going down and coming back ---------------------------------------------

GRACE = datetime.timedelta(seconds=90)


def live(name, status="active", heartbeat=10, enrolled=86_400, down_since=None, workspaces=()):
    return reconcile.HostLiveness(
        id=f"id-{name}",
        name=name,
        status=status,
        last_heartbeat=None if heartbeat is None else ago(heartbeat),
        enrolled_at=ago(enrolled),
        down_since=None if down_since is None else ago(down_since),
        workspaces=tuple(workspaces),
    )


def test_a_silent_host_goes_down_and_its_live_workspaces_are_lost():
    workspaces = [
        ws("w-run"),
        ws("w-stopped", desired="stopped", observed="stopped"),
        ws("w-creating", observed="creating", container_id=None),
        ws("w-deleting", desired="deleted", observed="deleting"),
        ws("w-lost", observed="lost"),
        ws("w-failed", observed="failed"),
        ws("w-deleted", desired="deleted", observed="deleted"),
    ]
    [down] = reconcile.hosts_down([live("h1", heartbeat=91, workspaces=workspaces)], NOW, GRACE)
    assert isinstance(down, reconcile.HostDown)
    assert down.lost_workspaces == ("w-creating", "w-run", "w-stopped")
    assert down.reason == "no heartbeat for 91s (limit 90s); 3 workspaces lost"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (live("fresh", heartbeat=90), []),
        (live("new", heartbeat=None, enrolled=30), []),
        (live("never", heartbeat=None, enrolled=300), ["HostDown"]),
        (live("back", status="down", heartbeat=5, down_since=60), ["HostBack"]),
        (live("still-down", status="down", heartbeat=200, down_since=100), []),
        (live("old-beat", status="down", heartbeat=50, down_since=40), []),
        (live("silent", status="down", heartbeat=None, down_since=40), []),
    ],
)
def test_hosts_go_down_after_the_grace_and_come_back_with_a_newer_heartbeat(host, expected):
    assert kinds(reconcile.hosts_down([host], NOW, GRACE)) == expected


def test_host_transitions_are_sorted_by_name():
    fleet = [live("b", heartbeat=500), live("a", heartbeat=500), live("c", status="down", heartbeat=1)]
    assert [t.host_name for t in reconcile.hosts_down(fleet, NOW, GRACE)] == ["a", "b", "c"]


def test_a_host_that_never_sent_a_heartbeat_says_so():
    [down] = reconcile.hosts_down([live("n", heartbeat=None, enrolled=7200)], NOW, GRACE)
    assert down.reason == "no heartbeat since enrolment for 2h00m (limit 90s); 0 workspaces lost"


def test_action_types_are_frozen_values():
    action = reconcile.StartContainer(workspace_id="w", container_id="c", reason="r")
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.reason = "other"
