"""End to end: a workspace created through the API really runs on the host placement chose, and goes away on delete."""

from __future__ import annotations

import urllib.request

from tests.e2e import system
from tests.harness import wait


async def _workspace(api: system.Api, ws_id: str) -> dict:
    return await api.get(f"/v1/workspaces/{ws_id}")


async def test_create_runs_the_container_on_the_chosen_host_and_delete_removes_it(a4c_system):
    # Create through the *second* instance: instances share nothing but PostgreSQL and Kafka.
    api = system.Api(a4c_system.planes[1].url, a4c_system.admin.headers["Authorization"].split()[1])
    accepted = await api.post(
        "/v1/workspaces",
        {
            "name": "e2e-life",
            "image_ref": a4c_system.workspace_image,
            "cpus": 0.5,
            "memory_mb": 64,
            "disk_gb": 1,
            "env": {"GREETING": "hi"},
            "ports": [{"container_port": 8080}],
        },
        expect=202,
    )
    ws_id, job_id = accepted["workspace"]["id"], accepted["job"]["id"]
    chosen = accepted["workspace"]["host_id"]
    assert chosen, accepted["workspace"]["state_reason"]

    async def running() -> dict | None:
        ws = await _workspace(api, ws_id)
        return ws if ws["observed_state"] == "running" and ws["container_id"] and ws["published_ports"] else None

    ws = await wait.eventually(running, timeout=45, message="the API shows the workspace running with container id and ports")

    # The agent reports the running container, then the job's result: two events, which
    # the control plane may apply in two batches, so the job's success is polled for.
    async def succeeded() -> dict | None:
        job = await api.get(f"/v1/jobs/{job_id}")
        return job if job["status"] == "succeeded" else None

    await wait.eventually(succeeded, timeout=30, interval=0.2, message="the create job succeeded")

    container = a4c_system.docker_client.containers.get(ws["container_id"])
    assert container.status == "running"
    assert container.labels["a4c.workspace"] == ws_id
    assert container.labels["a4c.host"] == chosen, "it runs on the host placement chose"
    port = ws["published_ports"][0]
    assert port["host_ip"] == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{port['host_port']}/", timeout=5) as resp:  # noqa: ASYNC210 - the system runs in other processes
        assert resp.read().strip() == b"a4c-workspace"

    deleted = await api.delete(f"/v1/workspaces/{ws_id}", expect=202)

    async def gone() -> bool:
        job = await api.get(f"/v1/jobs/{deleted['job']['id']}")
        return job["status"] == "succeeded"

    await wait.eventually(gone, timeout=45, message="the delete job succeeds")
    assert not a4c_system.docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws_id}"})
    await api.get(f"/v1/workspaces/{ws_id}", expect=404)  # a deleted workspace is gone from the API
