"""Fault tests: each ends with PostgreSQL, the Docker daemon and the API in agreement.

Messages are hints; reconciliation heals (ARCHITECTURE.md decision 2). Every
test injects one fault into the running system of two control-plane
instances and two agents, then waits (with a deadline) for agreement.
"""

from __future__ import annotations

import asyncio
import typing
import uuid

import asyncpg

from tests.e2e import system
from tests.harness import wait

HEAL = 60.0  # seconds: a few reconcile periods (1 s) plus ack timeouts (6 s) and rebalances


async def _create(sys_, name: str, **extra) -> dict:
    body = {"name": name, "image_ref": sys_.workspace_image, "cpus": 0.1, "memory_mb": 32, "disk_gb": 1, **extra}
    return await sys_.api.post("/v1/workspaces", body, expect=202)


async def _agree(sys_, message: str) -> None:
    host_ids = [a.host_id for a in sys_.agents]

    async def agreed() -> bool:
        problems = await system.agreement(sys_.api, sys_.docker_client, host_ids)
        if problems:
            raise AssertionError(problems)
        return True

    await wait.eventually(agreed, timeout=HEAL, interval=0.5, message=message)


async def _running(sys_, ws_id: str, timeout: float = HEAL, api: system.Api | None = None) -> dict:
    api = api or sys_.api

    async def check() -> dict | None:
        ws = await api.get(f"/v1/workspaces/{ws_id}")
        return ws if ws["observed_state"] == "running" else None

    return await wait.eventually(check, timeout=timeout, interval=0.3, message=f"workspace {ws_id} running")


def _agent_of(sys_, host_id: str) -> system.Agent:
    return next(a for a in sys_.agents if a.host_id == host_id)


async def test_an_agent_killed_mid_create_ends_with_exactly_one_container(a4c_system):
    sys_ = a4c_system
    accepted = await _create(sys_, "crash-create")
    agent = _agent_of(sys_, accepted["workspace"]["host_id"])
    # Kill the agent as soon as it has acknowledged the command (job running).
    async def acknowledged() -> bool:
        job = await sys_.api.get(f"/v1/jobs/{accepted['job']['id']}")
        return job["status"] in ("running", "succeeded")

    await wait.eventually(acknowledged, timeout=30, interval=0.05, message="the agent acknowledged the create")
    agent.kill()
    agent.start()
    await _running(sys_, accepted["workspace"]["id"])
    await _agree(sys_, "agreement after the agent was killed mid-create")


async def test_a_command_lost_with_the_broker_is_reissued(a4c_system, kafka_broker):
    sys_ = a4c_system
    host_id = sys_.agents[0].host_id
    # Cordon the other host so placement must choose the stopped one.
    other = sys_.agents[1].host_id
    await sys_.api.post(f"/v1/hosts/{other}/cordon")
    agent = sys_.agents[0]
    try:
        agent.stop()
        accepted = await _create(sys_, "lost-command")
        assert accepted["workspace"]["host_id"] == host_id
        # The command sits in the topic; restarting the memory broker loses it for good.
        async def published() -> bool:
            conn = await asyncpg.connect(sys_.planes[0].config["database"]["url"])
            try:
                return await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL AND topic = $1", f"commands.{host_id}") == 0
            finally:
                await conn.close()

        await wait.eventually(published, timeout=20, message="the create command was published")
        kafka_broker.restart()
        agent.start()
        await _running(sys_, accepted["workspace"]["id"], timeout=90)
    finally:
        await sys_.api.post(f"/v1/hosts/{other}/uncordon")
    await _agree(sys_, "agreement after a command was lost with the broker")


async def test_an_orphan_a4c_container_started_by_hand_is_removed_after_the_grace_period(a4c_system):
    sys_ = a4c_system
    host_id = sys_.agents[0].host_id
    orphan_ws = str(uuid.uuid4())
    container = sys_.docker_client.containers.run(
        sys_.workspace_image, detach=True, name=f"a4c-{orphan_ws}",
        labels={"a4c.workspace": orphan_ws, "a4c.host": host_id, "a4c.managed": "true"},
    )

    def gone() -> bool:
        return not sys_.docker_client.containers.list(all=True, filters={"id": container.id})

    await wait.eventually(gone, timeout=HEAL, interval=0.5, message="the orphan is removed after orphan_grace")
    await _agree(sys_, "agreement after an orphan was removed")


async def test_a_control_plane_instance_killed_mid_relay_loses_no_command(a4c_system):
    sys_ = a4c_system
    plane = sys_.planes[0]
    api1 = system.Api(sys_.planes[1].url, sys_.api.headers["Authorization"].split()[1])
    created = [await _create(sys_, f"relay-kill-{i}") for i in range(3)]
    plane.kill()
    try:
        for acc in created:
            await _running(sys_, acc["workspace"]["id"], api=api1)
        created.append(await api1.post("/v1/workspaces", {
            "name": "relay-kill-after", "image_ref": sys_.workspace_image, "cpus": 0.1, "memory_mb": 32, "disk_gb": 1,
        }, expect=202))
        await _running(sys_, created[-1]["workspace"]["id"], api=api1)
    finally:
        plane.start()
    await _agree(sys_, "agreement after a control-plane instance was killed")


async def test_a_stopped_agents_host_goes_down_its_workspaces_lost_and_both_come_back(a4c_system):
    sys_ = a4c_system
    agent = sys_.agents[1]
    host_id = agent.host_id
    other = sys_.agents[0].host_id
    await sys_.api.post(f"/v1/hosts/{other}/cordon")
    try:
        accepted = await _create(sys_, "survivor")
        assert accepted["workspace"]["host_id"] == host_id
    finally:
        await sys_.api.post(f"/v1/hosts/{other}/uncordon")
    ws_id = accepted["workspace"]["id"]
    await _running(sys_, ws_id)
    agent.stop()

    async def down_and_lost() -> bool:
        host = await sys_.api.get(f"/v1/hosts/{host_id}")
        ws = await sys_.api.get(f"/v1/workspaces/{ws_id}")
        return host["status"] == "down" and ws["observed_state"] == "lost"

    await wait.eventually(down_and_lost, timeout=40, interval=0.5, message="host down and its workspace lost")
    # Lost workspaces are not recreated elsewhere: people's work lives there.
    assert len(sys_.docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws_id}"})) == 1
    agent.start()

    async def back() -> bool:
        host = await sys_.api.get(f"/v1/hosts/{host_id}")
        ws = await sys_.api.get(f"/v1/workspaces/{ws_id}")
        return host["status"] == "active" and ws["observed_state"] == "running"

    await wait.eventually(back, timeout=HEAL, interval=0.5, message="host active and workspace running again")
    await _agree(sys_, "agreement after the host came back")


async def test_an_operator_recreates_a_lost_workspace_elsewhere_and_the_old_copy_is_cleaned_when_its_host_returns(a4c_system):
    sys_ = a4c_system
    agent, other = sys_.agents[0], sys_.agents[1]
    await sys_.api.post(f"/v1/hosts/{other.host_id}/cordon")
    try:
        accepted = await _create(sys_, "moved")
    finally:
        await sys_.api.post(f"/v1/hosts/{other.host_id}/uncordon")
    ws_id = accepted["workspace"]["id"]
    assert accepted["workspace"]["host_id"] == agent.host_id
    await _running(sys_, ws_id)
    refused = await sys_.api.call("POST", f"/v1/workspaces/{ws_id}/recreate", expect=409)
    assert refused["error"]["code"] == "not_lost"
    agent.stop()

    async def lost() -> bool:
        return (await sys_.api.get(f"/v1/workspaces/{ws_id}"))["observed_state"] == "lost"

    await wait.eventually(lost, timeout=40, interval=0.5, message="the workspace is lost with its host")
    again = await sys_.api.post(f"/v1/workspaces/{ws_id}/recreate", expect=202)
    assert again["workspace"]["host_id"] == other.host_id, again["workspace"]["state_reason"]
    ws = await _running(sys_, ws_id)
    assert ws["host_id"] == other.host_id
    agent.start()
    await _agree(sys_, "the old copy is removed as an orphan when its host returns; one container remains")
