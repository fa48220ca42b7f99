"""What the agent reports it holds: its jobs in every heartbeat, its builds' job in the inventory,
and a4c images it never tries to pull."""

from __future__ import annotations

import secrets

import pytest

from shared import messages
from tests.agent import conftest

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


async def test_heartbeats_list_a_job_from_its_acceptance_until_its_result_and_the_inventory_names_the_build_job(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"reporting": {"heartbeat_interval": 0.3, "inventory_interval": 0.5}})
    job_id = f"held-{secrets.token_hex(3)}"
    tag = f"a4c-test/held-{secrets.token_hex(3)}:1"
    dockerfile = f"FROM {kit.base_image}\nRUN sleep 3 && echo {job_id}\n"
    command = messages.BuildCommand(job_id=job_id, image_id=f"img-{job_id}", tag=tag, context=messages.BuildContext(dockerfile=dockerfile))
    await kit.send(agent, K.IMAGE_BUILD, command)
    await kit.events.wait_for("heartbeat", host_id=agent.host_id, timeout=30, where=lambda e: job_id in (e.payload.get("jobs") or []))
    result = await kit.events.wait_for("job.result", job_id=job_id, timeout=90)
    assert result.payload["ok"], result.payload
    accepted = kit.events.of("job.progress", agent.host_id, job_id=job_id, phase="accepted")[0]
    # A heartbeat sent after the result no longer lists it.
    after = await kit.events.wait_for("heartbeat", host_id=agent.host_id, timeout=10, where=lambda e: e.seq > result.seq)
    assert job_id not in after.payload["jobs"]
    # Every heartbeat between the acceptance and the result lists it: what the control plane relies on.
    between = [e for e in kit.events.of("heartbeat", agent.host_id) if accepted.seq < e.seq < result.seq]
    assert len(between) >= 5, "the build took a few heartbeat intervals"
    assert all(job_id in e.payload["jobs"] for e in between), [e.payload["jobs"] for e in between]

    def built(e) -> bool:
        return any(i["job_id"] == job_id and tag in i["tags"] for i in e.payload["images"])

    image = await kit.events.wait_for("inventory", host_id=agent.host_id, timeout=10, where=built)
    [info] = [i for i in image.payload["images"] if i["job_id"] == job_id]
    assert info["a4c_image"] == f"img-{job_id}"


async def test_a_missing_a4c_image_is_never_pulled_even_with_pulling_on(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"docker": {"pull_missing_images": True}})
    job_id = f"nopull-{secrets.token_hex(3)}"
    spec = kit.spec("ws-nopull", image="a4c/never-built-here:latest")
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id=job_id, spec=spec))
    result = await kit.events.result(job_id)
    assert result["ok"] is False
    assert "a4c/never-built-here:latest" in result["error"] and "never pulls it from a registry" in result["error"], result["error"]
    assert not kit.events.of("job.progress", agent.host_id, job_id=job_id, phase="pulling"), "the agent tried a registry"
