"""Acknowledged jobs a host no longer holds are re-queued or adopted from the inventory."""

from __future__ import annotations

import pytest

from controlplane.domain import held_jobs

WS = "ws-1"
JOB = "job-1"


def job(kind: str = "workspace_create", seq: int = 100, workspace: str | None = WS) -> held_jobs.Job:
    return held_jobs.Job(id=JOB, kind=kind, last_event_seq=seq, workspace_id=workspace)


def report(seq: int = 200, jobs: tuple[str, ...] | None = ()) -> held_jobs.Report:
    return held_jobs.Report(seq=seq, jobs=None if jobs is None else frozenset(jobs))


def inventory(*containers: tuple[str | None, str], images: tuple[held_jobs.Image, ...] = (), seq: int = 300) -> held_jobs.Inventory:
    return held_jobs.Inventory(
        seq=seq, containers=tuple(held_jobs.Container(f"c{i}", ws, state) for i, (ws, state) in enumerate(containers)), images=images
    )


def verdict_of(j: held_jobs.Job, r: held_jobs.Report | None, inv: held_jobs.Inventory | None) -> str:
    got = held_jobs.judge([j], r, inv, host_name="h1")
    assert len(got) <= 1
    if not got:
        return "keep"
    return "adopt" if isinstance(got[0], held_jobs.Adopt) else "requeue"


@pytest.mark.parametrize(
    ("case", "j", "r", "inv", "expected"),
    [
        # Not judged: the report says nothing, or does not come after the job's last event.
        ("no heartbeat yet", job(), None, inventory(), "keep"),
        ("old agent: no job list", job(), report(jobs=None), inventory(), "keep"),
        ("held", job(), report(jobs=(JOB,)), inventory(), "keep"),
        ("heartbeat before the job's last event", job(seq=200), report(seq=150), inventory(), "keep"),
        ("heartbeat at the same version", job(seq=200), report(seq=200), inventory(), "keep"),
        # Dropped, nothing to show for it: sent again.
        ("create, no container", job(), report(), inventory(), "requeue"),
        ("create, no inventory at all", job(), report(), None, "requeue"),
        ("create, container exited", job(), report(), inventory((WS, "exited")), "requeue"),
        ("create, two containers", job(), report(), inventory((WS, "running"), (WS, "exited")), "requeue"),
        ("create, another workspace's container", job(), report(), inventory(("other", "running")), "requeue"),
        ("create shown by an inventory older than the job", job(seq=400), report(seq=500), inventory((WS, "running"), seq=350), "requeue"),
        ("start, container created only", job("workspace_start"), report(), inventory((WS, "created")), "requeue"),
        ("stop, still running", job("workspace_stop"), report(), inventory((WS, "running")), "requeue"),
        ("delete, container still there", job("workspace_delete"), report(), inventory((WS, "exited")), "requeue"),
        ("cleanup: nothing to recognise", job("host_cleanup", workspace=None), report(), inventory(), "requeue"),
        ("build, no image", job("image_build", workspace=None), report(), inventory(), "requeue"),
        (
            "build, only another job's image",
            job("image_build", workspace=None),
            report(),
            inventory(images=(held_jobs.Image("sha256:old", ("a4c/x:latest",), "job-0"),)),
            "requeue",
        ),
        # Dropped, and the inventory shows it done: adopted.
        ("create, container running", job(), report(), inventory((WS, "running")), "adopt"),
        ("start, container running", job("workspace_start"), report(), inventory((WS, "running")), "adopt"),
        ("stop, container exited", job("workspace_stop"), report(), inventory((WS, "exited")), "adopt"),
        ("delete, no container", job("workspace_delete"), report(), inventory(("other", "running")), "adopt"),
        (
            "build, this job's image",
            job("image_build", workspace=None),
            report(),
            inventory(images=(held_jobs.Image("sha256:new", ("a4c/x:latest",), JOB),)),
            "adopt",
        ),
    ],
)
def test_verdicts(case, j, r, inv, expected):
    assert verdict_of(j, r, inv) == expected, case


def test_an_adopted_job_says_so_and_carries_what_the_inventory_shows():
    [create] = held_jobs.judge([job()], report(), inventory((WS, "running")), host_name="h1")
    assert isinstance(create, held_jobs.Adopt)
    assert create.reason.startswith("adopted from the inventory: container c0 running on host h1")
    assert create.result == {"state": "running", "container_id": "c0", "adopted": True}
    [build] = held_jobs.judge(
        [job("image_build", workspace=None)],
        report(),
        inventory(images=(held_jobs.Image("sha256:new", ("a4c/x:latest",), JOB),)),
        host_name="h1",
    )
    assert isinstance(build, held_jobs.Adopt)
    assert build.result == {"image_id": "sha256:new", "tag": "a4c/x:latest", "adopted": True}


def test_a_requeued_job_names_its_host_and_kind():
    [got] = held_jobs.judge([job("image_build", workspace=None)], report(), inventory(), host_name="h1")
    assert isinstance(got, held_jobs.Requeue)
    assert "host h1 no longer holds this image_build job" in got.reason


def test_verdicts_come_sorted_and_only_for_dropped_jobs():
    jobs = [held_jobs.Job(id=i, kind="workspace_create", last_event_seq=1, workspace_id=None) for i in ("c", "a", "b")]
    got = held_jobs.judge(jobs, report(jobs=("b",)), inventory(), host_name="h1")
    assert [v.job_id for v in got] == ["a", "c"]
