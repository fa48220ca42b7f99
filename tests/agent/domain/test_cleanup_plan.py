"""The cleanup plan: what is removed, in which order, and the things it must never touch."""

from __future__ import annotations

import dataclasses

import pytest

from agent.domain import cleanup as p

HOST = "h1"
NOW = 10_000.0
MiB = 1024 * 1024
OWN = {"a4c.managed": "true", "a4c.host": HOST}
POLICY = p.Policy(host_id=HOST, high_watermark=80, low_watermark=60, exited_grace=100)


def container(
    id: str,
    state: str = "exited",
    *,
    labels: dict | None = None,
    image: str = "img-base",
    finished: float | None = NOW - 500,
    workspace: str | None = None,
) -> p.ContainerFact:
    labels = dict(OWN if labels is None else labels)
    if workspace:
        labels["a4c.workspace"] = workspace
    return p.ContainerFact(id=id, name=id, state=state, image_id=image, labels=labels, created_at=NOW - 1000, finished_at=finished)


def image(id: str, *, used: float, size: int = 10 * MiB, tags: tuple[str, ...] | None = None, labels: dict | None = None) -> p.ImageFact:
    return p.ImageFact(id=id, tags=(f"{id}:1",) if tags is None else tags, labels=OWN if labels is None else labels, unique_size=size, last_used=used)


def disk(percent: float) -> p.Disk:
    return p.Disk(path="/d", total=100 * MiB, used=int(percent * MiB), free=int((100 - percent) * MiB))


def targets(plan: p.Plan, kind: str) -> list[str]:
    return [a.target for a in plan.of_kind(kind)]


def test_exited_containers_of_this_host_past_the_grace_period_are_removed() -> None:
    plan = p.plan(
        [
            container("old-exited"),
            container("young-exited", finished=NOW - 10),
            container("dead", "dead"),
            container("never-started", "created"),
            container("running", "running"),
            container("restarting", "restarting"),
            container("other-host", labels={"a4c.managed": "true", "a4c.host": "h2"}),
            container("unlabelled", labels={}),
            container("half-labelled", labels={"a4c.workspace": "w"}),
        ],
        [],
        disk(50),
        POLICY,
        now=NOW,
    )
    assert sorted(targets(plan, p.REMOVE_CONTAINER)) == ["dead", "never-started", "old-exited"]


def test_a_workspace_stopped_on_command_is_kept() -> None:
    policy = dataclasses.replace(POLICY, retained_workspaces=frozenset({"ws-parked"}))
    plan = p.plan([container("parked", workspace="ws-parked"), container("orphan", workspace="ws-orphan")], [], disk(50), policy, now=NOW)
    assert targets(plan, p.REMOVE_CONTAINER) == ["orphan"]


def test_without_pressure_no_tagged_image_is_removed_but_dangling_images_and_build_cache_are() -> None:
    images = [image("old", used=1.0), image("dangling", used=1.0, tags=("<none>:<none>",), size=3 * MiB)]
    plan = p.plan([], images, disk(79.9), POLICY, now=NOW, build_cache_bytes=5 * MiB)
    assert plan.pressure is False
    assert [a.kind for a in plan.actions] == [p.PRUNE_DANGLING, p.PRUNE_BUILD_CACHE]
    assert plan.projected_percent == pytest.approx(71.9, abs=0.01)


def test_under_pressure_least_recently_used_images_go_until_below_the_low_watermark() -> None:
    images = [image("newest", used=900), image("oldest", used=100), image("middle", used=500), image("older", used=200)]
    plan = p.plan([], images, disk(85), POLICY, now=NOW)
    # 85 % - 10 - 10 = 65 % is not below 60; a third image is needed: 55 %.
    assert targets(plan, p.REMOVE_IMAGE) == ["oldest", "older", "middle"]
    assert plan.pressure is True and plan.percent_before == 85 and plan.projected_percent == 55


def test_pressure_cleanup_stops_as_soon_as_the_projection_is_below_the_low_watermark() -> None:
    images = [image("a", used=1, size=30 * MiB), image("b", used=2)]
    plan = p.plan([], images, disk(85), POLICY, now=NOW)
    assert targets(plan, p.REMOVE_IMAGE) == ["a"]


def test_cheaper_removals_count_before_any_image_is_sacrificed() -> None:
    images = [image("kept", used=1), image("dangling", used=1, tags=(), size=15 * MiB)]
    plan = p.plan([], images, disk(81), POLICY, now=NOW, build_cache_bytes=10 * MiB)
    assert targets(plan, p.REMOVE_IMAGE) == []


def test_an_image_any_container_uses_is_never_removed_even_a_foreign_stopped_one() -> None:
    containers = [
        container("ws", "running", image="in-use-running"),
        container("foreign", "exited", labels={}, image="in-use-by-foreign"),
        container("parked", image="in-use-by-parked", workspace="ws-parked"),
    ]
    images = [image(i, used=1) for i in ("in-use-running", "in-use-by-foreign", "in-use-by-parked", "free")]
    images.append(image("dangling-in-use", used=1, tags=()))
    containers.append(container("runs-dangling", "running", image="dangling-in-use"))
    policy = dataclasses.replace(POLICY, retained_workspaces=frozenset({"ws-parked"}))
    plan = p.plan(containers, images, disk(99), policy, now=NOW)
    assert targets(plan, p.REMOVE_IMAGE) == ["free"]
    assert plan.of_kind(p.PRUNE_DANGLING) == []


def test_an_image_freed_by_removing_its_exited_container_can_go_in_the_same_run() -> None:
    plan = p.plan([container("orphan", image="only-the-orphan-used-it")], [image("only-the-orphan-used-it", used=1)], disk(90), POLICY, now=NOW)
    assert targets(plan, p.REMOVE_CONTAINER) == ["orphan"]
    assert targets(plan, p.REMOVE_IMAGE) == ["only-the-orphan-used-it"]


def test_images_of_other_hosts_and_unlabelled_images_are_never_candidates() -> None:
    images = [image("theirs", used=1, labels={"a4c.managed": "true", "a4c.host": "h2"}), image("base", used=1, labels={})]
    plan = p.plan([], images, disk(99), POLICY, now=NOW)
    assert targets(plan, p.REMOVE_IMAGE) == []


def test_without_a_disk_figure_there_is_no_pressure_and_no_projection() -> None:
    plan = p.plan([container("orphan")], [image("x", used=1)], None, POLICY, now=NOW)
    assert plan.pressure is False and plan.projected_percent is None
    assert targets(plan, p.REMOVE_CONTAINER) == ["orphan"] and targets(plan, p.REMOVE_IMAGE) == []


def test_pressure_is_decided_by_the_fullest_path_with_dfs_percent() -> None:
    # df's percent: used / (used + free); root-reserved blocks count as neither.
    reserved = p.Disk(path="/r", total=100, used=45, free=45)
    assert reserved.percent == 50
    assert p.fullest([p.Disk("/a", 100, 10, 90), reserved, p.Disk("/empty", 0, 0, 0)]) == reserved
    assert p.fullest([]) is None
