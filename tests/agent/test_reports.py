"""Disk reports: psutil on the configured paths, Docker's own figures, each workspace's writable layer.

(Inventories are checked where they matter: after a restart, with two agents, after a build.)
"""

from __future__ import annotations

import pytest

from shared import messages
from tests.agent import conftest

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


async def test_disk_reports_measure_the_paths_dockers_figures_and_each_workspaces_writable_layer(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"cleanup": {"high_watermark": 91.5}})
    spec = kit.spec("ws-disk", command=["sh", "-c", "dd if=/dev/zero of=/scratch bs=1M count=3 && exec sleep 3600"])
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="disk", spec=spec))
    assert (await kit.events.result("disk"))["ok"]

    report = await kit.events.wait_for(
        "disk", host_id=agent.host_id, timeout=20, where=lambda e: e.payload["workspaces"].get("ws-disk", 0) >= 3 * 1024 * 1024
    )
    (path,) = report.payload["paths"]
    assert path["path"] == agent.config["reporting"]["disk_paths"][0]
    assert path["total_bytes"] > 0 and path["used_bytes"] + path["free_bytes"] <= path["total_bytes"]
    assert 0 <= path["percent"] <= 100
    assert report.payload["high_watermark"] == 91.5, "the agent says where its cleanup starts"
    assert set(report.payload["docker"]) == {"images", "containers", "volumes", "build_cache"}
    assert report.payload["docker"]["images"] > 0 and report.payload["docker"]["containers"] >= 3 * 1024 * 1024
