"""The cleanup daemon under disk pressure, and the dry run, against the real Docker daemon.

The disk check points at a small tmpfs the test fills past the high
watermark; the agent then prunes oldest-first until its projection is below
the low watermark, and never touches a running container, an image in use, a
workspace stopped on command, or a container without its a4c labels.
"""

from __future__ import annotations

import io
import os
import pathlib
import secrets
import subprocess
import tarfile
import typing

import docker
import pytest

from shared import messages
from tests.agent import conftest
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
    return client.images.get(tag).id


def _exited(client: docker.DockerClient, image: str, labels: dict[str, str]) -> str:
    container = client.containers.run(image, ["true"], detach=True, labels=labels)
    container.wait(timeout=30)
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
