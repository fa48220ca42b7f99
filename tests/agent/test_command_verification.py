"""Only commands signed with this host's key, addressed to it, fresh and never seen before are executed.

Each test follows its bad command with a good "marker" command on the same
topic: commands are handled in order, so once the marker's result is out,
the bad one has been dealt with, and its absence of effects is final.
"""

from __future__ import annotations

import json
import time

import pytest

from shared import messages, signing
from tests.agent import conftest, driver

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


async def _marker(kit: conftest.Kit, agent: driver.AgentProcess) -> None:
    await kit.send(agent, K.WORKSPACE_DELETE, messages.WorkspaceRef(job_id="marker", workspace_id="ws-marker"))
    assert (await kit.events.result("marker"))["ok"]


def _create(kit: conftest.Kit, job_id: str, workspace_id: str) -> messages.WorkspaceCommand:
    return messages.WorkspaceCommand(job_id=job_id, spec=kit.spec(workspace_id))


async def test_a_forged_command_is_rejected_and_no_container_appears(kit: conftest.Kit) -> None:
    agent = kit.agent()
    forged = kit.commands.envelope(K.WORKSPACE_CREATE, _create(kit, "forged", "ws-forged"), host_id=agent.host_id, key=signing.new_key())
    await kit.commands.send_raw(agent.host_id, forged)
    await _marker(kit, agent)

    assert kit.containers_of(agent) == []
    assert kit.events.of("job.progress", job_id="forged") == [] and kit.events.of("job.result", job_id="forged") == []
    assert agent.logged("command rejected", reason="bad-signature", command_id=json.loads(forged)["id"])


async def test_an_unsigned_command_is_rejected(kit: conftest.Kit) -> None:
    agent = kit.agent()
    unsigned = kit.commands.envelope(K.WORKSPACE_CREATE, _create(kit, "unsigned", "ws-unsigned"), host_id=agent.host_id, key=None)
    await kit.commands.send_raw(agent.host_id, unsigned)
    await kit.commands.send_raw(agent.host_id, b"not even json")
    await _marker(kit, agent)

    assert kit.containers_of(agent) == []
    assert len(agent.logged("command rejected", reason="unsigned")) == 2


async def test_a_replayed_command_is_executed_once(kit: conftest.Kit) -> None:
    agent = kit.agent()
    raw = kit.commands.envelope(
        K.WORKSPACE_DELETE, messages.WorkspaceRef(job_id="once", workspace_id="ws-once"), host_id=agent.host_id, key=agent.key
    )
    await kit.commands.send_raw(agent.host_id, raw)
    assert (await kit.events.result("once"))["ok"]
    await kit.commands.send_raw(agent.host_id, raw)
    await _marker(kit, agent)

    assert len(kit.events.of("job.result", job_id="once")) == 1
    assert len(kit.events.of("job.progress", job_id="once", phase="accepted")) == 1
    assert agent.logged("command rejected", reason="replayed", command_id=json.loads(raw)["id"])


async def test_a_command_older_than_the_replay_window_is_rejected(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"agent": {"replay_window": 60}})
    stale = kit.commands.envelope(
        K.WORKSPACE_CREATE, _create(kit, "stale", "ws-stale"), host_id=agent.host_id, key=agent.key, issued_at=time.time() - 120
    )
    await kit.commands.send_raw(agent.host_id, stale)
    await _marker(kit, agent)

    assert kit.containers_of(agent) == [] and kit.events.of("job.progress", job_id="stale") == []
    assert agent.logged("command rejected", reason="expired")


async def test_a_command_for_another_host_is_rejected_even_on_this_hosts_topic(kit: conftest.Kit) -> None:
    agent = kit.agent()
    # Signed with this host's key (a leaked key is the worst case), but addressed elsewhere.
    elsewhere = kit.commands.envelope(K.WORKSPACE_CREATE, _create(kit, "elsewhere", "ws-elsewhere"), host_id="some-other-host", key=agent.key)
    await kit.commands.send_raw(agent.host_id, elsewhere)
    await _marker(kit, agent)

    assert kit.containers_of(agent) == []
    assert agent.logged("command rejected", reason="wrong-host")


async def test_a_signed_command_with_an_invalid_payload_fails_its_job_naming_the_field(kit: conftest.Kit) -> None:
    agent = kit.agent()
    payload = {"job_id": "bad-spec", "spec": {**kit.spec("ws-bad").model_dump(mode="json"), "cpus": -1}}
    await kit.send(agent, K.WORKSPACE_CREATE, payload)

    result = await kit.events.result("bad-spec")
    assert result["ok"] is False
    assert result["error"].startswith("invalid command: payload.spec.cpus")
    assert kit.containers_of(agent) == []


async def test_a_command_nobody_can_read_is_rejected_and_the_next_one_runs(kit: conftest.Kit) -> None:
    # JSON nested past the parser's depth raised out of verification and stopped the consumer in a loop.
    agent = kit.agent()
    await kit.commands.send_raw(agent.host_id, b"[" * 100_000 + b"]" * 100_000)
    await _marker(kit, agent)

    assert agent.logged("command rejected", reason="unreadable")
