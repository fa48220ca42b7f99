"""The cleanup daemon under disk pressure, and the dry run, against the real Docker daemon.

The disk check points at a small tmpfs the test fills past the high
watermark; the agent then prunes oldest-first until its projection is below
the low watermark, and never touches a running container, an image in use, a
workspace stopped on command, or a container without its a4c labels.
"""

from __future__ import annotations

import io
import itertools
import os
import pathlib
import secrets
import subprocess
import tarfile
import typing

import docker
import pytest

from agent.domain import inventory as inv
from shared import messages
from tests.agent import conftest, driver
from tests.harness import base_image as base_image_mod
from tests.harness import run as run_mod

K = messages.CommandKind
MiB = 1024 * 1024

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


@pytest.fixture
def small_disk(harness_run: run_mod.Run) -> typing.Iterator[pathlib.Path]:
    """A 32 MiB tmpfs (under the run's directory, so a crashed session's mount is reaped too)."""
    mount = harness_run.subdir(f"agent-disk-{secrets.token_hex(3)}")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True, capture_output=True)


def _a4c_image(client: docker.DockerClient, tag: str, host_id: str, size: int) -> str:
    """An image the agent owns: busybox (so it can run) plus ``size`` random bytes (so no layer is shared)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(base_image_mod.find_static_busybox()), arcname="bin/busybox")
        for applet in ("sh", "sleep", "true"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        info = tarfile.TarInfo("blob")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    repo, _, version = tag.rpartition(":")
    client.api.import_image_from_data(
        buf.getvalue(),
        repository=repo,
        tag=version,
        changes=["LABEL a4c.managed=true", f"LABEL a4c.host={host_id}", f"LABEL a4c.image={repo}"],
    )
    image_id = client.images.get(tag).id
    assert image_id is not None
    return image_id


def _exited(client: docker.DockerClient, image: str, labels: dict[str, str]) -> str:
    container = client.containers.run(image, ["true"], detach=True, labels=labels)
    container.wait(timeout=30)
    assert container.id is not None
    return container.id


async def test_disk_pressure_prunes_oldest_images_down_to_the_low_watermark_and_spares_what_is_in_use(
    kit: conftest.Kit, small_disk: pathlib.Path
) -> None:
    client = kit.docker_client
    client.images.prune(filters={"dangling": True})  # so the agent's projection counts only what this test made
    agent = kit.agent(
        overrides={
            "reporting": {"disk_paths": [str(small_disk)]},
            "cleanup": {"high_watermark": 80, "low_watermark": 60, "exited_grace": 0.01, "pressure_cooldown": 600},
        },
        start=False,
    )
    tags = [f"a4c-test/lru-{i}-{secrets.token_hex(2)}:1" for i in range(5)]
    ids = [_a4c_image(client, tag, agent.host_id, 4 * MiB) for tag in tags]  # oldest first
    orphan = _exited(client, kit.base_image, {"a4c.managed": "true", "a4c.host": agent.host_id, "a4c.workspace": "ws-orphan"})
    foreign = _exited(client, kit.base_image, {run_mod.TEST_LABEL: "cleanup-test"})
    try:
        kit.start(agent)
        await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="keep", spec=kit.spec("ws-keep", image=tags[1])))
        await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="parked", spec=kit.spec("ws-parked")))
        await kit.send(agent, K.WORKSPACE_STOP, messages.WorkspaceRef(job_id="park", workspace_id="ws-parked"))
        for job in ("keep", "parked", "park"):
            assert (await kit.events.result(job))["ok"]

        (small_disk / "filler").write_bytes(b"\0" * (29 * MiB))  # about 90 % of 32 MiB
        report = (
            await kit.events.wait_for("disk", host_id=agent.host_id, where=lambda e: (e.payload.get("cleanup") or {}).get("trigger") == "pressure")
        ).payload["cleanup"]

        assert report["dry_run"] is False and report["errors"] == []
        assert report["percent_before"] >= 80
        # Three 4 MiB images bring the projection under 60 %; two would not have.
        # Each image holds about 6 MiB of its own: removing the two oldest unused
        # ones brings the projection under 60 %, one would not have.
        assert report["removed_images"] == [ids[0], ids[2]]
        assert 50 < report["projected_percent"] < 60
        assert report["removed_containers"] == [orphan]
        remaining = {image.id for image in client.images.list()}
        assert ids[1] in remaining, "the image a running workspace uses survives"
        assert {ids[3], ids[4]} <= remaining, "the most recently used images survive"
        assert not {ids[0], ids[2]} & remaining
        assert kit.container(agent, "ws-keep").status == "running"
        assert kit.container(agent, "ws-parked").status == "exited", "a workspace stopped on command is kept"
        assert client.containers.get(foreign).status == "exited", "a container without a4c labels is never touched"
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(orphan)
    finally:
        client.containers.get(foreign).remove(force=True)
        for tag in tags:
            try:
                client.images.remove(tag, force=True)
            except docker.errors.NotFound:
                pass


async def test_a_dry_run_cleanup_reports_what_it_would_remove_and_removes_nothing(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"cleanup": {"exited_grace": 0.01}}, start=False)
    orphan = _exited(kit.docker_client, kit.base_image, {"a4c.managed": "true", "a4c.host": agent.host_id, "a4c.workspace": "ws-dry"})
    kit.start(agent)
    await kit.send(agent, K.HOST_CLEANUP, messages.CleanupCommand(job_id="dry", dry_run=True))

    result = await kit.events.result("dry")
    assert result["ok"], result
    assert result["result"]["dry_run"] is True and result["result"]["trigger"] == "command"
    assert result["result"]["removed_containers"] == [orphan]
    assert kit.docker_client.containers.get(orphan).status == "exited"
    # The same report goes out with the next disk report.
    disk = await kit.events.wait_for("disk", host_id=agent.host_id, where=lambda e: (e.payload.get("cleanup") or {}).get("job_id") == "dry")
    assert disk.payload["cleanup"]["removed_containers"] == [orphan]


async def test_a_cleanup_command_removes_the_exited_orphans_it_reports_and_leaves_running_and_foreign_containers_alone(
    kit: conftest.Kit,
) -> None:
    client = kit.docker_client
    agent = kit.agent(overrides={"cleanup": {"exited_grace": 0.01}}, start=False)
    owned = {"a4c.managed": "true", "a4c.host": agent.host_id}
    orphans = {_exited(client, kit.base_image, {**owned, "a4c.workspace": f"ws-gone-{i}"}) for i in range(2)}
    running = client.containers.run(kit.base_image, ["sleep", "3600"], detach=True, labels={**owned, "a4c.workspace": "ws-busy"}).id
    assert running is not None
    unlabelled = _exited(client, kit.base_image, {run_mod.TEST_LABEL: "cleanup-test"})
    other_host = _exited(
        client,
        kit.base_image,
        {"a4c.managed": "true", "a4c.host": f"{agent.host_id}-other", "a4c.workspace": "ws-theirs", run_mod.TEST_LABEL: "cleanup-test"},
    )
    try:
        kit.start(agent)
        await kit.send(agent, K.HOST_CLEANUP, messages.CleanupCommand(job_id="now", dry_run=False))

        result = await kit.events.result("now")
        assert result["ok"], result
        report = result["result"]
        assert report["dry_run"] is False and report["trigger"] == "command" and report["errors"] == []
        assert set(report["removed_containers"]) == orphans
        for orphan in orphans:
            with pytest.raises(docker.errors.NotFound):
                client.containers.get(orphan)
        assert client.containers.get(running).status == "running", "a running a4c container is never removed"
        assert client.containers.get(unlabelled).status == "exited", "a container without a4c labels is never touched"
        assert client.containers.get(other_host).status == "exited", "another host's a4c container is never touched"
    finally:
        for foreign in (unlabelled, other_host):
            client.containers.get(foreign).remove(force=True)


async def test_the_scheduled_cleanup_removes_an_exited_orphan_once_its_grace_has_passed_without_any_command(kit: conftest.Kit) -> None:
    client = kit.docker_client
    grace = 3.0
    # A high watermark of 100 % keeps disk pressure from triggering runs of its own: every run here is the schedule's.
    agent = kit.agent(overrides={"cleanup": {"interval": 0.5, "exited_grace": grace, "high_watermark": 100, "low_watermark": 99}})
    orphan = _exited(client, kit.base_image, {"a4c.managed": "true", "a4c.host": agent.host_id, "a4c.workspace": "ws-orphan"})
    unlabelled = _exited(client, kit.base_image, {run_mod.TEST_LABEL: "cleanup-test"})
    finished = inv.parse_time(client.api.inspect_container(orphan)["State"]["FinishedAt"])
    assert finished is not None

    def scheduled(event: driver.Event) -> bool:
        return (event.payload.get("cleanup") or {}).get("trigger") == "schedule"

    try:
        removal = await kit.events.wait_for(
            "disk",
            host_id=agent.host_id,
            timeout=30,
            where=lambda e: scheduled(e) and orphan in e.payload["cleanup"]["removed_containers"],
        )

        assert removal.payload["cleanup"]["dry_run"] is False and removal.payload["cleanup"]["errors"] == []
        assert removal.issued_at >= finished + grace
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(orphan)
        assert client.containers.get(unlabelled).status == "exited", "a container without a4c labels is never touched"
        assert not kit.events.of("job.result", agent.host_id), "no command was involved"
        # Scheduled runs follow one another (one at a time), so a run whose
        # predecessor reported after the orphan exited saw the orphan; those
        # before the removal kept it because its grace had not yet passed.
        runs = sorted((e for e in kit.events.of("disk", agent.host_id) if scheduled(e)), key=lambda e: e.seq)
        runs.index(removal)
        kept_within_grace = [run for before, run in itertools.pairwise(runs) if before.issued_at > finished]
        assert kept_within_grace, "scheduled runs during the grace period keep the orphan"
    finally:
        client.containers.get(unlabelled).remove(force=True)
