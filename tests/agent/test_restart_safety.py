"""After kill -9 the agent finds its containers again, resumes from its committed offset, and never doubles a container."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest

from shared import messages
from tests.agent import conftest

K = messages.CommandKind


def _created(client: docker.DockerClient, name: str, since: int, timeout: int) -> bool:
    """Block until Docker reports the container ``name`` created (events from ``since`` on), or ``timeout`` seconds pass."""
    stream = client.events(decode=True, since=since, until=since + timeout, filters={"type": "container", "event": "create", "container": name})
    try:
        return next(iter(stream), None) is not None
    finally:
        stream.close()


pytestmark = [pytest.mark.docker, pytest.mark.kafka]


async def test_kill_9_during_a_create_then_restart_leaves_one_container_and_a_final_job_state(kit: conftest.Kit) -> None:
    agent = kit.agent()
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="before", spec=kit.spec("ws-before")))
    assert (await kit.events.result("before"))["ok"]

    # Kill the moment Docker has the container: created, not yet started, no result out. Docker's
    # event stream says so as it happens; reading it in a thread keeps this test's loop free.
    created = asyncio.create_task(asyncio.to_thread(_created, kit.docker_client, kit.name(agent, "ws-crash"), int(time.time()), 15))
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="crash", spec=kit.spec("ws-crash")))
    assert await created, "the agent never created the container"
    agent.kill9()
    assert kit.events.of("job.result", job_id="crash") == [], "killed too late: the create had finished"
    restarted_at = max(e.seq for e in kit.events.events)

    kit.start(agent)
    result = await kit.events.result("crash", timeout=30)
    assert result["ok"], result
    assert result["result"]["adopted"] is True, "the restarted agent adopted the half-made container"
    names = sorted(c.name for c in kit.containers_of(agent))
    assert names == sorted([kit.name(agent, "ws-before"), kit.name(agent, "ws-crash")])
    assert kit.container(agent, "ws-crash").status == "running"

    # Re-discovered by label and reported by the new process.
    inventory = await kit.events.wait_for(
        "inventory", host_id=agent.host_id, where=lambda e: e.seq > restarted_at and len(e.payload["containers"]) == 2
    )
    assert {c["workspace_id"] for c in inventory.payload["containers"]} == {"ws-before", "ws-crash"}
    # The command finished before the crash was not executed again.
    assert len(kit.events.of("job.result", job_id="before")) == 1
    assert len(kit.events.of("job.progress", job_id="before", phase="accepted")) == 1


async def test_a_restarted_agent_rejects_a_command_it_executed_before_the_restart(kit: conftest.Kit) -> None:
    agent = kit.agent()
    raw = kit.commands.envelope(K.WORKSPACE_DELETE, messages.WorkspaceRef(job_id="old", workspace_id="ws-old"), host_id=agent.host_id, key=agent.key)
    await kit.commands.send_raw(agent.host_id, raw)
    assert (await kit.events.result("old"))["ok"]
    assert agent.terminate() == 0

    kit.start(agent)
    await kit.commands.send_raw(agent.host_id, raw)  # an attacker replays a captured command
    await kit.send(agent, K.WORKSPACE_DELETE, messages.WorkspaceRef(job_id="marker", workspace_id="ws-marker"))
    assert (await kit.events.result("marker"))["ok"]
    assert len(kit.events.of("job.result", job_id="old")) == 1
    assert agent.logged("command rejected", since_start=True, reason="replayed")
