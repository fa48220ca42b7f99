"""Workspace commands, driven only through signed Kafka commands and observed through events and Docker."""

from __future__ import annotations

import pytest

from shared import messages
from tests.agent import conftest
from tests.harness import wait

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


async def test_create_runs_a_container_with_every_limit_and_label_set(kit: conftest.Kit) -> None:
    agent = kit.agent()
    spec = kit.spec(
        "ws-limits",
        cpus=0.5,
        memory_mb=96,
        pids_limit=77,
        env={"GREETING": "hello"},
        ports=[messages.PortSpec(container_port=8080)],
    )
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="job-limits", spec=spec))

    accepted = await kit.events.wait_for("job.progress", job_id="job-limits", phase="accepted")
    result = await kit.events.result("job-limits")
    assert result["ok"], result
    running = await kit.events.wait_for("workspace.state", workspace_id="ws-limits", state="running")
    assert accepted.seq < running.seq

    container = kit.container(agent, "ws-limits")
    assert container.id == result["result"]["container_id"] == running.payload["container_id"]
    assert container.status == "running"
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 96 * 1024 * 1024
    assert host["PidsLimit"] == 77
    assert host["Privileged"] is False
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["CapDrop"] == ["ALL"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    labels = container.labels
    assert labels["a4c.workspace"] == "ws-limits"
    assert labels["a4c.host"] == agent.host_id
    assert labels["a4c.job"] == "job-limits"
    assert labels["a4c.managed"] == "true"
    assert "GREETING=hello" in container.attrs["Config"]["Env"]
    binding = host["PortBindings"]["8080/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    published = result["result"]["ports"][0]
    assert published["container_port"] == 8080 and published["host_ip"] == "127.0.0.1" and published["host_port"] > 0
    assert running.payload["ports"] == result["result"]["ports"]


async def test_a_repeated_create_yields_one_container(kit: conftest.Kit) -> None:
    agent = kit.agent()
    command = messages.WorkspaceCommand(job_id="job-1", spec=kit.spec("ws-twice"))
    await kit.send(agent, K.WORKSPACE_CREATE, command)
    await kit.send(agent, K.WORKSPACE_CREATE, command.model_copy(update={"job_id": "job-2"}))

    first, second = await kit.events.result("job-1"), await kit.events.result("job-2")
    assert first["ok"] and second["ok"], (first, second)
    assert second["result"]["adopted"] is True
    assert first["result"]["container_id"] == second["result"]["container_id"]
    assert [c.name for c in kit.containers_of(agent)] == [kit.name(agent, "ws-twice")]


async def test_stop_start_and_delete_change_the_container_and_report_each_state(kit: conftest.Kit) -> None:
    agent = kit.agent()
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="c", spec=kit.spec("ws-cycle")))
    assert (await kit.events.result("c"))["ok"]

    await kit.send(agent, K.WORKSPACE_STOP, messages.WorkspaceRef(job_id="s", workspace_id="ws-cycle"))
    assert (await kit.events.result("s"))["ok"]
    await kit.events.wait_for("workspace.state", workspace_id="ws-cycle", state="stopped")
    assert kit.container(agent, "ws-cycle").status == "exited"

    await kit.send(agent, K.WORKSPACE_START, messages.WorkspaceRef(job_id="r", workspace_id="ws-cycle"))
    assert (await kit.events.result("r"))["ok"]
    assert kit.container(agent, "ws-cycle").status == "running"

    await kit.send(agent, K.WORKSPACE_DELETE, messages.WorkspaceRef(job_id="d", workspace_id="ws-cycle"))
    deleted = await kit.events.result("d")
    assert deleted["ok"] and deleted["result"]["already_gone"] is False
    await kit.events.wait_for("workspace.state", workspace_id="ws-cycle", state="deleted")
    assert kit.containers_of(agent) == []


async def test_deleting_a_workspace_that_is_gone_succeeds(kit: conftest.Kit) -> None:
    agent = kit.agent()
    await kit.send(agent, K.WORKSPACE_DELETE, messages.WorkspaceRef(job_id="gone", workspace_id="ws-never-was"))
    result = await kit.events.result("gone")
    assert result["ok"] is True and result["result"]["already_gone"] is True


async def test_starting_a_workspace_without_a_container_fails_and_reports_it_missing(kit: conftest.Kit) -> None:
    agent = kit.agent()
    await kit.send(agent, K.WORKSPACE_START, messages.WorkspaceRef(job_id="nope", workspace_id="ws-absent"))
    result = await kit.events.result("nope")
    assert result["ok"] is False and f"no container {kit.name(agent, 'ws-absent')}" in result["error"]
    await kit.events.wait_for("workspace.state", workspace_id="ws-absent", state="missing")


async def test_a_container_that_dies_on_its_own_is_reported_with_its_exit_code(kit: conftest.Kit) -> None:
    agent = kit.agent()
    # Outlives the settle period (0.5 s in tests/agent/driver.py), so the create succeeds.
    spec = kit.spec("ws-crashy", command=["sh", "-c", "sleep 3; exit 7"])
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="crashy", spec=spec))
    assert (await kit.events.result("crashy"))["ok"]

    died = await kit.events.wait_for("workspace.state", workspace_id="ws-crashy", state="exited", timeout=20)
    assert died.payload["exit_code"] == 7
    assert "exited on its own" in died.payload["reason"]
    # The restart policy brings it back, and that is reported too.
    await kit.events.wait_for("workspace.state", workspace_id="ws-crashy", state="running", where=lambda e: e.seq > died.seq)


async def test_a_create_naming_a_missing_image_fails_with_dockers_reason(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"docker": {"pull_missing_images": False}})
    spec = kit.spec("ws-noimage", image="a4c-test/does-not-exist:1")
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="noimg", spec=spec))
    result = await kit.events.result("noimg")
    assert result["ok"] is False
    assert "a4c-test/does-not-exist:1" in result["error"] and "not on this host" in result["error"]
    await wait.eventually(lambda: kit.containers_of(agent) == [], message="no container")


async def test_a_container_removed_right_after_the_agents_own_change_is_reported_before_the_next_inventory(kit: conftest.Kit) -> None:
    # Inventories far apart: the removal must be reported on its own account, not by the next period.
    agent = kit.agent(overrides={"reporting": {"inventory_interval": 120}})
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="snatched", spec=kit.spec("ws-snatched")))
    assert (await kit.events.result("snatched"))["ok"]
    # At once, inside the short tail after its own change in which the agent skips the
    # workspace's Docker events (agent/context.py Expectations): not a change it made.
    kit.container(agent, "ws-snatched").remove(force=True)
    since = kit.events.of("job.result", job_id="snatched")[0].received_at

    def reported(event) -> bool:
        if event.received_at < since:
            return False
        if event.kind == "workspace.state":
            return event.payload["workspace_id"] == "ws-snatched" and event.payload["state"] == "missing"
        return event.kind == "inventory" and all(c["workspace_id"] != "ws-snatched" for c in event.payload["containers"])

    def heard() -> bool:
        return any(reported(e) for e in kit.events.of("workspace.state", agent.host_id) + kit.events.of("inventory", agent.host_id))

    await wait.eventually(heard, timeout=20, interval=0.2, message="the removal reported (a missing state or an inventory without it)")
