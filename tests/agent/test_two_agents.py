"""Two agents with different host ids on one Docker daemon each act only on their own commands and report only their own containers."""

from __future__ import annotations

import pytest

from shared import messages
from tests.agent import conftest

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


async def test_two_agents_on_one_machine_each_act_only_on_their_own_commands(kit: conftest.Kit) -> None:
    alpha, beta = kit.agent("alpha"), kit.agent("beta")
    await kit.send(alpha, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="ja", spec=kit.spec("ws-alpha")))
    await kit.send(beta, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="jb", spec=kit.spec("ws-beta")))
    # A command for beta pushed onto alpha's topic (and signed with beta's key) is not alpha's to run.
    misrouted = kit.commands.envelope(
        K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="jx", spec=kit.spec("ws-misrouted")), host_id="beta", key=beta.key
    )
    await kit.commands.send_raw("alpha", misrouted)
    # Commands are taken in order: once this marker is answered, the misrouted one was dealt with.
    await kit.send(alpha, K.WORKSPACE_DELETE, messages.WorkspaceRef(job_id="marker", workspace_id="ws-marker"))
    await kit.events.result("marker")

    ra, rb = await kit.events.result("ja"), await kit.events.result("jb")
    assert ra["ok"] and rb["ok"]
    assert {e.host_id for e in kit.events.of("job.result", job_id="ja")} == {"alpha"}
    assert {e.host_id for e in kit.events.of("job.result", job_id="jb")} == {"beta"}
    assert [c.name for c in kit.containers_of(alpha)] == [kit.name(alpha, "ws-alpha")]
    assert [c.name for c in kit.containers_of(beta)] == [kit.name(beta, "ws-beta")]

    def saw_own_container(host: str, workspace: str):
        return lambda e: [c["workspace_id"] for c in e.payload["containers"]] == [workspace]

    inv_a = await kit.events.wait_for("inventory", host_id="alpha", where=saw_own_container("alpha", "ws-alpha"))
    inv_b = await kit.events.wait_for("inventory", host_id="beta", where=saw_own_container("beta", "ws-beta"))
    assert inv_a.payload["containers"][0]["container_id"] == ra["result"]["container_id"]
    assert inv_b.payload["containers"][0]["container_id"] == rb["result"]["container_id"]
    # No inventory of either host ever listed the other's container.
    for e in kit.events.of("inventory"):
        listed = {c["workspace_id"] for c in e.payload["containers"]}
        assert listed <= ({"ws-alpha"} if e.host_id == "alpha" else {"ws-beta"})
    assert kit.events.of("job.progress", job_id="jx") == []
    assert alpha.logged("command rejected", reason="bad-signature")
    # Every event verified against its own host's key.
    assert kit.events.forged == []
