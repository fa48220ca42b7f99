"""Fault tests for what agents report they hold.

* Jobs: every heartbeat lists the jobs its agent holds, so an acknowledged
  job the agent dropped (kill -9 plus a broker that forgot the command) is
  sent again, and one whose result was lost is closed from the inventory —
  neither waits for its deadline (600 s here).
* Images: cleanup removes an unused a4c image; the control plane stops
  believing the host has it, and a later create there rebuilds it first.

Same system as tests/e2e/test_faults.py (two control planes, two agents,
reconcile period 1 s), on a broker of this module's own, since it restarts it.
"""

from __future__ import annotations

import datetime
import json
import uuid

import docker.errors
import pytest

from tests.e2e import test_faults as faults
from tests.harness import processes, wait

PERIOD = 1.0  # reconciler.interval in tests/e2e/conftest.py
BUILD = 120.0


@pytest.fixture(scope="module")
def kafka_broker(module_kafka_broker):
    return module_kafka_broker


@pytest.fixture(scope="module")
def kafka_bootstrap(module_kafka_broker) -> str:
    return module_kafka_broker.bootstrap


async def _job(sys_, job_id: str) -> dict:
    rows = await faults._query(
        sys_, "SELECT status::text, attempts, reason, result, dispatched_at, finished_at FROM jobs WHERE id = $1", uuid.UUID(job_id)
    )
    job = dict(rows[0])
    job["result"] = json.loads(job["result"]) if job["result"] else job["result"]
    return job


async def _heard_since(sys_, host_id: str, since: datetime.datetime) -> datetime.datetime:
    """When the control plane first applied a heartbeat of ``host_id`` after ``since``."""

    async def heard() -> datetime.datetime | None:
        rows = await faults._query(sys_, "SELECT last_heartbeat_at FROM hosts WHERE id = $1::uuid", host_id)
        return rows[0]["last_heartbeat_at"] if rows[0]["last_heartbeat_at"] > since else None

    return await wait.eventually(heard, timeout=120, interval=0.1, message=f"a heartbeat from {host_id} after {since}")


def _logged(sys_, needle: str) -> list[str]:
    return [line for plane in sys_.planes for line in plane.log.read_text(errors="replace").splitlines() if needle in line]


async def test_an_agent_killed_mid_build_with_a_broker_restart_gets_the_build_again_and_it_succeeds(a4c_system, kafka_broker):
    sys_ = a4c_system
    # Long enough that the kill lands mid-build; the second run finds no cache for the RUN step either.
    image = await sys_.api.post(
        "/v1/images", {"name": "killed-build", "dockerfile": f"FROM {sys_.base_image}\nRUN sleep 8 && echo built > /built\n"}, expect=201
    )
    [job] = (await sys_.api.post(f"/v1/images/{image['id']}/builds", expect=202))["jobs"]
    agent = faults._agent_of(sys_, job["host_id"])

    async def acknowledged() -> bool:
        return (await _job(sys_, job["id"]))["status"] == "running"

    await wait.eventually(acknowledged, timeout=30, interval=0.05, message="the agent acknowledged the build")
    agent.kill()
    # The broker forgets everything, the command with it: the restarted agent never sees it again.
    kafka_broker.restart(lose_data=True)
    restarted = datetime.datetime.now(datetime.UTC)
    agent.start()
    heard = await _heard_since(sys_, agent.host_id, restarted)

    async def sent_again() -> dict | None:
        got = await _job(sys_, job["id"])
        return got if got["attempts"] >= 2 else None

    again = await wait.eventually(sent_again, timeout=60, interval=0.1, message="the dropped build is dispatched again")
    delay = (again["dispatched_at"] - heard).total_seconds()
    print(f"build re-dispatched {delay:.2f} s after the restarted agent's first heartbeat was applied")
    # Two reconcile periods, plus one heartbeat interval (1 s) and slack for a loaded 2-core machine.
    assert delay <= 2 * PERIOD + 4.0, f"re-dispatched {delay:.1f} s after the agent was heard again"
    assert _logged(sys_, f"job {job['id']} on "), "the reconciler logged why it sent the build again"

    async def succeeded() -> dict | None:
        got = await _job(sys_, job["id"])
        assert got["status"] not in ("failed", "cancelled"), got
        return got if got["status"] == "succeeded" else None

    await wait.eventually(succeeded, timeout=BUILD, interval=0.3, message="the build succeeds on its second dispatch")
    sys_.docker_client.images.get(image["tag"])
    await faults._agree(sys_, "agreement after an agent was killed mid-build and the broker lost its data")


async def test_a_lost_result_event_closes_its_job_from_the_inventory_within_a_period(a4c_system, monkeypatch):
    sys_ = a4c_system
    agent, other = sys_.agents[0], sys_.agents[1]
    agent.stop()
    with monkeypatch.context() as env:
        env.setenv("A4C_FAILPOINTS", "agent.before_result=raise")  # only this agent's process (Popen copies the environment)
        agent.start()
    await sys_.api.post(f"/v1/hosts/{other.host_id}/cordon")
    try:
        accepted = await faults._create(sys_, "result-lost")
        assert accepted["workspace"]["host_id"] == agent.host_id
        ws = await faults._running(sys_, accepted["workspace"]["id"])  # the state events arrive; the result never does
        running_seen = datetime.datetime.now(datetime.UTC)

        async def closed() -> dict | None:
            got = await _job(sys_, accepted["job"]["id"])
            return got if got["status"] in ("succeeded", "failed", "cancelled") else None

        done = await wait.eventually(closed, timeout=30, interval=0.1, message="the create job closes without its result")
        took = (done["finished_at"] - running_seen).total_seconds()
        print(f"create job closed {took:.2f} s after its workspace was seen running")
        assert done["status"] == "succeeded", done
        assert done["reason"].startswith("adopted from the inventory"), done["reason"]
        # Only adoption writes this result: the agent's own result was never applied.
        assert done["result"]["adopted"] is True and done["result"]["container_id"] == ws["container_id"], done["result"]
        # One period after the next heartbeat and inventory (1 s and 1.5 s here), with slack for a loaded machine.
        assert took <= PERIOD + 1.5 + 4.0, f"closed {took:.1f} s after the workspace ran"
    finally:
        await sys_.api.post(f"/v1/hosts/{other.host_id}/uncordon")
        agent.stop()
        agent.start()  # unarmed
    await faults._agree(sys_, "agreement after a lost result event")


async def test_an_image_removed_by_cleanup_is_rebuilt_before_a_later_create_on_its_host(a4c_system):
    sys_ = a4c_system
    agent, other = sys_.agents[0], sys_.agents[1]
    image = await sys_.api.post(
        "/v1/images", {"name": "pruned", "dockerfile": f"FROM {sys_.workspace_image}\nRUN echo built > /www/built.txt\n"}, expect=201
    )
    tag = image["tag"]  # a4c/pruned:<image id> (migration 0008)
    body = {"image": "pruned", "cpus": 0.1, "memory_mb": 32, "disk_gb": 1}
    await sys_.api.post(f"/v1/hosts/{other.host_id}/cordon")
    try:
        first = await sys_.api.post("/v1/workspaces", {"name": "pruned-1", **body}, expect=202)
        assert first["workspace"]["host_id"] == agent.host_id
        await faults._running(sys_, first["workspace"]["id"], timeout=BUILD)
        deleting = await sys_.api.delete(f"/v1/workspaces/{first['workspace']['id']}", expect=202)

        async def deleted() -> bool:
            return (await _job(sys_, deleting["job"]["id"]))["status"] == "succeeded"

        await wait.eventually(deleted, timeout=faults.HEAL, interval=0.3, message="the first workspace is deleted")
        recorded_sql = "SELECT image_id FROM host_images WHERE host_id = $1::uuid AND image_id = $2::uuid"
        assert await faults._query(sys_, recorded_sql, agent.host_id, image["id"]), "the build was recorded on the host"

        # Disk pressure at any use: the agent's cleanup removes every unused a4c image of its host.
        calm = dict(agent.config["cleanup"])
        agent.stop()
        agent.config["cleanup"] = {"enabled": True, "high_watermark": 1.0, "low_watermark": 0.5, "pressure_cooldown": 1.0}
        agent.start()
        try:

            def removed() -> bool:
                try:
                    sys_.docker_client.images.get(tag)
                except docker.errors.ImageNotFound:
                    return True
                return False

            await wait.eventually(removed, timeout=60, interval=0.3, message=f"cleanup removed {tag}\n{processes.log_tail(agent.log)}")

            async def forgotten() -> bool:
                return not await faults._query(sys_, recorded_sql, agent.host_id, image["id"])

            await wait.eventually(forgotten, timeout=30, interval=0.2, message="the control plane no longer records the image on the host")
        finally:
            agent.stop()
            agent.config["cleanup"] = calm
            agent.start()

        second = await sys_.api.post("/v1/workspaces", {"name": "pruned-2", **body}, expect=202)
        assert second["workspace"]["host_id"] == agent.host_id
        assert second["job"]["status"] == "pending" and "waiting for image pruned" in second["job"]["reason"], second["job"]
        ws = await faults._running(sys_, second["workspace"]["id"], timeout=BUILD)
    finally:
        await sys_.api.post(f"/v1/hosts/{other.host_id}/uncordon")
    container = sys_.docker_client.containers.get(ws["container_id"])
    assert container.exec_run("cat /www/built.txt").output.strip() == b"built"
    builds = [
        j
        for j in (await sys_.api.get(f"/v1/jobs?image_id={image['id']}&limit=200"))["items"]
        if j["kind"] == "image_build" and j["host_id"] == agent.host_id
    ]
    assert [j["status"] for j in builds] == ["succeeded", "succeeded"], builds
    await faults._agree(sys_, "agreement after a create rebuilt an image cleanup had removed")
