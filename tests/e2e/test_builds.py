"""Image builds from the API, CI (topic and webhook) and cron, each one job; workspaces wait for their image."""

from __future__ import annotations

import datetime
import json

import aiokafka
import asyncpg

from shared import signing
from tests.e2e import system
from tests.harness import wait

BUILD = 90.0


async def _job_done(api: system.Api, job_id: str, timeout: float = BUILD) -> dict:
    async def final() -> dict | None:
        job = await api.get(f"/v1/jobs/{job_id}")
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return await wait.eventually(final, timeout=timeout, interval=0.3, message=f"job {job_id} finished")


async def _register(sys_, name: str, dockerfile: str) -> dict:
    return await sys_.api.post("/v1/images", {"name": name, "dockerfile": dockerfile}, expect=201)


async def test_a_failing_build_reports_its_real_error_line(a4c_system):
    sys_ = a4c_system
    image = await _register(sys_, "broken", f"FROM {sys_.base_image}\nRUN echo 'write /var/cache: no space left on device' >&2 && exit 3\n")
    [job] = (await sys_.api.post(f"/v1/images/{image['id']}/builds", expect=202))["jobs"]
    done = await _job_done(sys_.api, job["id"])
    assert done["status"] == "failed"
    assert "no space left on device" in done["error"], done["error"]


async def test_a_build_that_prints_a_nul_byte_keeps_its_log_and_its_host_keeps_reporting(a4c_system):
    # The NUL in this output made PostgreSQL refuse the log update, the event consumer retried it
    # forever, heartbeats stopped being applied and the host was marked down.
    sys_ = a4c_system
    image = await _register(sys_, "nul-output", f"FROM {sys_.base_image}\nRUN printf 'before\\000after\\n'\n")
    [job] = (await sys_.api.post(f"/v1/images/{image['id']}/builds", expect=202))["jobs"]
    done = await _job_done(sys_.api, job["id"])
    assert done["status"] == "succeeded", done
    assert "before\ufffdafter" in done["log_tail"], done["log_tail"]
    finished = datetime.datetime.fromisoformat(done["finished_at"].replace("Z", "+00:00"))

    async def heartbeat_after_the_build() -> bool:
        host = await sys_.api.get(f"/v1/hosts/{done['host_id']}")
        seen = host["last_heartbeat_at"]
        return host["status"] == "active" and seen is not None and datetime.datetime.fromisoformat(seen.replace("Z", "+00:00")) > finished

    await wait.eventually(heartbeat_after_the_build, timeout=30, interval=0.5, message="a heartbeat applied after the NUL build")


async def test_a_workspace_on_a_host_without_its_image_waits_for_the_build_then_runs(a4c_system):
    sys_ = a4c_system
    image = await _register(sys_, "web", f"FROM {sys_.workspace_image}\nRUN echo built > /www/built.txt\n")
    accepted = await sys_.api.post("/v1/workspaces", {"name": "waits", "image": "web", "cpus": 0.1, "memory_mb": 32, "disk_gb": 1}, expect=202)
    assert accepted["job"]["status"] == "pending" and "waiting for image web" in accepted["job"]["reason"], accepted["job"]

    async def running() -> dict | None:
        ws = await sys_.api.get(f"/v1/workspaces/{accepted['workspace']['id']}")
        return ws if ws["observed_state"] == "running" else None

    ws = await wait.eventually(running, timeout=BUILD, interval=0.5, message="the workspace runs once its image is built")
    container = sys_.docker_client.containers.get(ws["container_id"])
    assert container.exec_run("cat /www/built.txt").output.strip() == b"built"
    builds = (await sys_.api.get("/v1/jobs?limit=200"))["items"]
    mine = [j for j in builds if j["kind"] == "image_build" and j["image_id"] == image["id"]]
    assert len(mine) == 1 and mine[0]["host_id"] == ws["host_id"] and mine[0]["status"] == "succeeded"


async def _builds_of(database_url: str, image_id: str, source: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch("SELECT id, status FROM jobs WHERE image_id = $1 AND source = $2", __import__("uuid").UUID(image_id), source)
    finally:
        await conn.close()


async def test_a_ci_message_and_a_webhook_call_each_yield_one_build_and_a_malformed_message_is_skipped(a4c_system, kafka_bootstrap):
    sys_ = a4c_system
    image = await _register(sys_, "ci-built", f'FROM {sys_.base_image}\nCMD ["true"]\n')
    database_url = sys_.planes[0].config["database"]["url"]
    key = (await sys_.api.post("/v1/ci-systems", {"name": "jenkins", "images": ["ci-built"]}, expect=201))["key"]
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        topic = f"{sys_.prefix}.ci-builds"
        await producer.send_and_wait(topic, b"{not json")
        await producer.send_and_wait(topic, signing.sign_ci_build({"image": "ci-built", "unknown": 1}, "jenkins", key))
        await producer.send_and_wait(topic, json.dumps({"image": "ci-built", "idempotency_key": "unsigned"}).encode())  # builds nothing
        await producer.send_and_wait(topic, signing.sign_ci_build({"image": "ci-built", "idempotency_key": "jenkins-41"}, "jenkins", key))
        await producer.send_and_wait(topic, signing.sign_ci_build({"image": "ci-built", "idempotency_key": "jenkins-41"}, "jenkins", key))  # a retry
    finally:
        await producer.stop()

    async def one_ci_build() -> bool:
        return len(await _builds_of(database_url, image["id"], "ci")) == 1

    await wait.eventually(one_ci_build, timeout=30, interval=0.3, message="one build job from the CI topic")
    hook = await sys_.api.post("/v1/ci/builds", {"image": "ci-built", "idempotency_key": "gh-run-7"}, expect=202)
    again = await sys_.api.post("/v1/ci/builds", {"image": "ci-built", "idempotency_key": "gh-run-7"}, expect=202)
    assert [j["id"] for j in hook["jobs"]] == [j["id"] for j in again["jobs"]] and len(hook["jobs"]) == 1
    assert len(await _builds_of(database_url, image["id"], "webhook")) == 1
    # The consumer survived the malformed messages: a later good one still becomes a build.
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{sys_.prefix}.ci-builds", signing.sign_ci_build({"image": "ci-built", "idempotency_key": "jenkins-42"}, "jenkins", key)
        )
    finally:
        await producer.stop()

    async def two_ci_builds() -> bool:
        return len(await _builds_of(database_url, image["id"], "ci")) == 2

    await wait.eventually(two_ci_builds, timeout=30, interval=0.3, message="the consumer kept going after malformed messages")
    for job in await _builds_of(database_url, image["id"], "ci"):
        await _job_done(sys_.api, str(job["id"]))


async def test_a_cron_schedule_every_minute_for_three_minutes_yields_exactly_three_builds(a4c_system):
    sys_ = a4c_system
    image = await _register(sys_, "nightly", f'FROM {sys_.base_image}\nCMD ["true"]\n')
    schedule = await sys_.api.post(f"/v1/images/{image['id']}/schedules", {"cron": "* * * * *", "timezone": "UTC"}, expect=201)
    database_url = sys_.planes[0].config["database"]["url"]
    first = datetime.datetime.fromisoformat(schedule["next_runs"][0].replace("Z", "+00:00"))
    third = datetime.datetime.fromisoformat(schedule["next_runs"][2].replace("Z", "+00:00"))

    async def three() -> bool:
        return len(await _builds_of(database_url, image["id"], "schedule")) >= 3

    # Two control-plane instances tick every second; the third slot is at most 3 minutes away.
    remaining = (third - datetime.datetime.now(datetime.UTC)).total_seconds()
    await wait.eventually(three, timeout=remaining + 20, interval=1.0, message="three scheduled builds")
    # Past the third slot, well before the fourth: still exactly three.
    await wait.eventually(lambda: datetime.datetime.now(datetime.UTC) > third + datetime.timedelta(seconds=5), timeout=30, message="settled")
    builds = await _builds_of(database_url, image["id"], "schedule")
    assert len(builds) == 3, [dict(b) for b in builds]
    assert first < third
