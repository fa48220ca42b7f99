"""Disk limits on the harness's real dockerd: whether the host can enforce, why not, and what each workspace really uses.

The harness's dockerd keeps its data root in the run directory (tests/harness/dockerd.py): overlay2 (or vfs) on
whatever filesystem that is, never xfs with prjquota, so these show the host that cannot enforce.
"""

from __future__ import annotations

import pytest

from shared import messages
from tests.agent import conftest

K = messages.CommandKind
MB = 1024 * 1024

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


def _unable(kit: conftest.Kit) -> dict:
    info = kit.docker_client.info()
    if info.get("Driver") in ("btrfs", "zfs"):
        pytest.skip(f"the harness's dockerd runs {info['Driver']}, which enforces")
    return info


async def test_a_host_that_cannot_enforce_says_why_and_reports_what_each_workspace_writes(kit: conftest.Kit) -> None:
    info = _unable(kit)
    agent = kit.agent()
    spec = kit.spec("ws-used", disk_gb=1, command=["sh", "-c", "dd if=/dev/zero of=/scratch bs=1M count=24 && sync && exec sleep 3600"])
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="used", spec=spec))
    assert (await kit.events.result("used"))["ok"]

    report = await kit.events.wait_for(
        "disk", host_id=agent.host_id, timeout=30, where=lambda e: e.payload["workspaces"].get("ws-used", 0) >= 24 * MB
    )
    limits = report.payload["disk_limits"]
    assert limits["enforced"] is False
    driver = info["Driver"]
    backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem")
    expected = f"overlay2 on {backing}" if driver == "overlay2" and backing and backing != "xfs" else driver
    assert expected in limits["reason"] and "Docker cannot cap a container's disk there" in limits["reason"], limits
    # The writable layer holds the 24 MB file and little else.
    assert 24 * MB <= report.payload["workspaces"]["ws-used"] < 26 * MB, report.payload["workspaces"]
    # Not enforced, so not asked: a size here would make Docker refuse the create.
    assert not kit.container(agent, "ws-used").attrs["HostConfig"].get("StorageOpt")
    assert agent.logged("workspace disk limits not enforced: disk_gb is a reservation only")


async def test_enforce_true_refuses_to_start_where_the_host_cannot(kit: conftest.Kit) -> None:
    _unable(kit)
    agent = kit.agent(overrides={"docker": {"enforce_disk_limit": True}}, start=False)
    agent.start()
    assert agent.process is not None
    assert agent.process.wait(timeout=30) == 2
    said = [r.get("message", "") for r in agent.log_lines(since_start=True) if r.get("log.level") in ("error", "critical")]
    assert any(m.startswith("refusing to start: docker.enforce_disk_limit is true, but this host cannot enforce disk limits: ") for m in said), (
        agent.log_tail()
    )
    assert not agent.logged("agent started", since_start=True)
