"""A workspace's published host port is chosen once and kept: stop/start, agent restart, a lost container; a taken port is a reason."""

from __future__ import annotations

import socket

import pytest

from shared import messages
from tests.agent import conftest, driver

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]

RANGE = {"docker": {"port_range": "41000-41999"}}


def _port(result: dict) -> int:
    (published,) = result["result"]["ports"]
    return published["host_port"]


async def _run(kit: conftest.Kit, agent: driver.AgentProcess, kind: K, payload: messages._Model, job: str) -> dict:
    await kit.send(agent, kind, payload)
    result = await kit.events.result(job)
    assert result["ok"], result
    return result


async def test_the_host_port_survives_stop_start_an_agent_restart_and_a_lost_container(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides=RANGE)
    spec = kit.spec("ws-port", ports=[messages.PortSpec(container_port=8080)])
    port = _port(await _run(kit, agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="c1", spec=spec), "c1"))
    assert 41000 <= port <= 41999
    assert kit.container(agent, "ws-port").attrs["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"] == str(port)

    await _run(kit, agent, K.WORKSPACE_STOP, messages.WorkspaceRef(job_id="s1", workspace_id="ws-port"), "s1")
    assert _port(await _run(kit, agent, K.WORKSPACE_START, messages.WorkspaceRef(job_id="r1", workspace_id="ws-port"), "r1")) == port

    agent.stop()
    kit.start(agent)
    await _run(kit, agent, K.WORKSPACE_STOP, messages.WorkspaceRef(job_id="s2", workspace_id="ws-port"), "s2")
    assert _port(await _run(kit, agent, K.WORKSPACE_START, messages.WorkspaceRef(job_id="r2", workspace_id="ws-port"), "r2")) == port

    # The container is lost (removed by hand); the recreated one gets the recorded port back.
    kit.container(agent, "ws-port").remove(force=True)
    again = await _run(kit, agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="c2", spec=spec), "c2")
    assert again["result"]["adopted"] is False and _port(again) == port

    # Deleting the workspace frees the port for others: a new workspace may get any port, and its own is recorded.
    await _run(kit, agent, K.WORKSPACE_DELETE, messages.WorkspaceRef(job_id="d", workspace_id="ws-port"), "d")
    other = _port(
        await _run(
            kit,
            agent,
            K.WORKSPACE_CREATE,
            messages.WorkspaceCommand(job_id="c3", spec=kit.spec("ws-port-2", ports=[messages.PortSpec(container_port=22)])),
            "c3",
        )
    )
    assert 41000 <= other <= 41999


async def test_a_port_taken_by_another_program_fails_the_start_and_names_the_port(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides=RANGE)
    spec = kit.spec("ws-taken", ports=[messages.PortSpec(container_port=8080)])
    port = _port(await _run(kit, agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="c", spec=spec), "c"))
    await _run(kit, agent, K.WORKSPACE_STOP, messages.WorkspaceRef(job_id="s", workspace_id="ws-taken"), "s")

    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        await kit.send(agent, K.WORKSPACE_START, messages.WorkspaceRef(job_id="r", workspace_id="ws-taken"))
        result = await kit.events.result("r")
        assert result["ok"] is False
        assert f"host port {port}" in result["error"] and "in use by another program" in result["error"], result
        failed = await kit.events.wait_for("workspace.state", workspace_id="ws-taken", state="failed")
        assert f"host port {port}" in failed.payload["reason"] and "8080/tcp" in failed.payload["reason"]
        assert kit.container(agent, "ws-taken").status != "running"

    # Freed: the same port again, not a new one.
    assert _port(await _run(kit, agent, K.WORKSPACE_START, messages.WorkspaceRef(job_id="r2", workspace_id="ws-taken"), "r2")) == port
