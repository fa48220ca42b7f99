"""End to end: workspaces stay up with any image, crash loops fail, builds are never starved."""

from __future__ import annotations

import time

from tests.e2e import system
from tests.harness import wait

BUILD = 120.0


async def _workspace(api: system.Api, ws_id: str) -> dict:
    return await api.get(f"/v1/workspaces/{ws_id}")


async def _running(api: system.Api, ws_id: str, timeout: float = 60) -> dict:
    async def check() -> dict | None:
        ws = await _workspace(api, ws_id)
        assert ws["observed_state"] not in ("failed", "exited"), ws
        return ws if ws["observed_state"] == "running" and ws["container_id"] else None

    return await wait.eventually(check, timeout=timeout, interval=0.3, message=f"workspace {ws_id} running")


async def _job_done(api: system.Api, job_id: str, timeout: float = BUILD) -> dict:
    async def final() -> dict | None:
        job = await api.get(f"/v1/jobs/{job_id}")
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return await wait.eventually(final, timeout=timeout, interval=0.3, message=f"job {job_id} finished")


async def _delete(api: system.Api, ws_id: str) -> None:
    """Delete and wait until it is gone (until then it still holds its CPUs)."""
    deleted = await api.delete(f"/v1/workspaces/{ws_id}", expect=202)
    assert (await _job_done(api, deleted["job"]["id"], timeout=30))["status"] == "succeeded"


async def test_a_workspace_whose_image_runs_a_shell_stays_running_for_60_s_in_one_container_and_stops_in_under_2_s(a4c_system):
    sys_ = a4c_system
    # The harness's base image has CMD ["sh"]: without a terminal it exits at once with code 0.
    accepted = await sys_.api.post(
        "/v1/workspaces", {"name": "shell", "image_ref": sys_.base_image, "cpus": 0.1, "memory_mb": 32, "disk_gb": 1}, expect=202
    )
    ws_id = accepted["workspace"]["id"]
    ws = await _running(sys_.api, ws_id)
    container_id = ws["container_id"]
    began = time.monotonic()

    async def still_up_after_60_s() -> bool:
        now = await _workspace(sys_.api, ws_id)
        assert now["observed_state"] == "running" and now["container_id"] == container_id, now
        container = sys_.docker_client.containers.get(container_id)
        assert container.status == "running" and container.attrs["RestartCount"] == 0, (container.status, container.attrs["RestartCount"])
        return time.monotonic() - began >= 60

    await wait.eventually(still_up_after_60_s, timeout=90, interval=1.0, message="the same container running for 60 s")
    assert sys_.docker_client.containers.get(container_id).attrs["HostConfig"]["Init"] is True

    asked = time.monotonic()
    stop = await sys_.api.post(f"/v1/workspaces/{ws_id}/stop", expect=202)

    async def stopped() -> dict | None:
        job = await sys_.api.get(f"/v1/jobs/{stop['job']['id']}")
        return job if job["status"] == "succeeded" else None

    await wait.eventually(stopped, timeout=30, interval=0.05, message="the stop job succeeded")
    took = time.monotonic() - asked
    # The agent's stop_timeout is the default 10 s here: only a SIGTERM that works stops it this fast.
    assert took < 2.0, f"stop took {took:.2f} s, API to API"
    assert sys_.docker_client.containers.get(container_id).attrs["State"]["ExitCode"] == 0
    await _delete(sys_.api, ws_id)


async def test_a_crash_looping_image_ends_failed_with_its_exit_code_and_log_tail(a4c_system):
    sys_ = a4c_system
    await sys_.api.post(
        "/v1/images", {"name": "crashy", "dockerfile": f'FROM {sys_.base_image}\nCMD ["sh", "-c", "echo boom; exit 3"]\n'}, expect=201
    )
    accepted = await sys_.api.post("/v1/workspaces", {"name": "crashy", "image": "crashy", "cpus": 0.1, "memory_mb": 32, "disk_gb": 1}, expect=202)
    ws_id = accepted["workspace"]["id"]

    async def failed() -> dict | None:
        ws = await _workspace(sys_.api, ws_id)
        assert ws["observed_state"] != "running", f"reported running: {ws}"
        return ws if ws["observed_state"] == "failed" else None

    ws = await wait.eventually(failed, timeout=BUILD, interval=0.3, message="the crash-looping workspace is failed")
    reason = ws["state_reason"]
    assert "exit code 3" in reason and "restarted" in reason and "boom" in reason, reason
    job = await _job_done(sys_.api, accepted["job"]["id"], timeout=10)
    assert job["status"] == "failed" and "exit code 3" in job["error"], job
    # Stopped by its agent, and left alone by the reconcilers: no restart loop.
    container = sys_.docker_client.containers.get(ws["container_id"])
    assert container.status == "exited"
    await _delete(sys_.api, ws_id)


async def _schedule_jobs(api: system.Api, image_id: str) -> list[dict]:
    jobs = (await api.get(f"/v1/jobs?kind=image_build&image_id={image_id}&limit=200"))["items"]
    return [j for j in jobs if j["source"] == "schedule"]


async def test_with_every_cpu_reserved_builds_and_scheduled_builds_run_coalesce_and_a_stop_frees_cpus(a4c_system):
    sys_ = a4c_system
    api = sys_.api
    hosts = (await api.get("/v1/hosts"))["items"]
    reserved: dict[str, str] = {}
    for i, host in enumerate(hosts):
        body = {"name": f"hog{i}", "image_ref": sys_.base_image, "cpus": host["capacity"]["cpus"], "memory_mb": 32, "disk_gb": 1}
        made = await api.post("/v1/workspaces", body, expect=202)
        assert made["workspace"]["host_id"], made["workspace"]["state_reason"]
        reserved[made["workspace"]["host_id"]] = made["workspace"]["id"]
    assert set(reserved) == {h["id"] for h in hosts}, "one workspace holds every CPU of each host"
    for ws_id in reserved.values():
        await _running(api, ws_id)
    nothing_left = await api.post(
        "/v1/workspaces", {"name": "no-room", "image_ref": sys_.base_image, "cpus": 0.1, "memory_mb": 32, "disk_gb": 1}, expect=202
    )
    assert nothing_left["workspace"]["observed_state"] == "pending" and "lack cpu" in nothing_left["workspace"]["state_reason"]
    await api.delete(f"/v1/workspaces/{nothing_left['workspace']['id']}", expect=202)  # never placed: gone at once

    # A slow scheduled build: the next every-minute slot comes while it still runs.
    slow = await api.post("/v1/images", {"name": "slow", "dockerfile": f"FROM {sys_.base_image}\nRUN sleep 75\n"}, expect=201)
    schedule = await api.post(f"/v1/images/{slow['id']}/schedules", {"cron": "* * * * *", "timezone": "UTC"}, expect=201)

    quick = await api.post("/v1/images", {"name": "quick", "dockerfile": f"FROM {sys_.base_image}\nRUN echo built\n"}, expect=201)
    [build] = (await api.post(f"/v1/images/{quick['id']}/builds", expect=202))["jobs"]
    assert build["status"] == "dispatched" and "build slots, not workspace CPUs" in build["reason"], build
    assert (await _job_done(api, build["id"]))["status"] == "succeeded"

    async def first_scheduled() -> dict | None:
        found = await _schedule_jobs(api, slow["id"])
        return found[0] if found and found[0]["status"] == "running" else None

    first = await wait.eventually(first_scheduled, timeout=90, interval=0.5, message="the scheduled build runs")

    async def coalesced() -> dict | None:
        shown = await api.get(f"/v1/images/{slow['id']}/schedules/{schedule['id']}")
        return shown if shown["last_outcome"].startswith(f"coalesced into build job {first['id']}") else None

    shown = await wait.eventually(coalesced, timeout=90, interval=0.5, message="the next slot joins the running build")
    assert shown["last_job_id"] == first["id"]
    assert [j["id"] for j in await _schedule_jobs(api, slow["id"])] == [first["id"]], "no second job while the first runs"
    assert (await _job_done(api, first["id"]))["status"] == "succeeded"
    await api.delete(f"/v1/images/{slow['id']}/schedules/{schedule['id']}", expect=204)

    # A stopped workspace releases its CPUs: a new one as large lands on the same host and runs.
    host_id, hog = next(iter(reserved.items()))
    stop = await api.post(f"/v1/workspaces/{hog}/stop", expect=202)
    assert (await _job_done(api, stop["job"]["id"], timeout=30))["status"] == "succeeded"
    cpus = next(h["capacity"]["cpus"] for h in hosts if h["id"] == host_id)
    taker = await api.post("/v1/workspaces", {"name": "taker", "image_ref": sys_.base_image, "cpus": cpus, "memory_mb": 32, "disk_gb": 1}, expect=202)
    assert taker["workspace"]["host_id"] == host_id, taker["workspace"]["state_reason"]
    await _running(api, taker["workspace"]["id"])
    refused = await api.post(f"/v1/workspaces/{hog}/start", expect=409)
    assert refused["error"]["code"] == "insufficient_capacity", refused
    for ws_id in [taker["workspace"]["id"], *reserved.values()]:
        await _delete(api, ws_id)
