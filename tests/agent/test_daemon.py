"""Daemon behaviour of a real agent process: SIGTERM, SIGHUP, sd_notify, /metrics and /healthz, the access listener."""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
import yaml

from shared import messages, signing
from tests.agent import conftest
from tests.harness import ports, wait

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


async def test_sigterm_interrupts_work_past_the_deadline_reports_it_and_exits_cleanly(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"daemon": {"shutdown_deadline": 2}})
    build = messages.BuildCommand(
        job_id="slow-build",
        image_id="img-slow",
        tag="a4c-test/slow:1",
        context=messages.BuildContext(dockerfile=f"FROM {kit.base_image}\nRUN sleep 30\n"),
    )
    await kit.send(agent, K.IMAGE_BUILD, build)

    def build_containers() -> list[str]:
        return [row["Id"] for row in kit.docker_client.api.containers(all=True) if row.get("Command") == "/bin/sh -c 'sleep 30'"]

    await wait.eventually(build_containers, timeout=15, message="the build's RUN step is running")

    began = time.monotonic()
    assert agent.terminate(timeout=15) == 0
    assert time.monotonic() - began < 2 + 1.5, "shutdown kept to its deadline"
    result = await kit.events.result("slow-build", timeout=5)
    assert result["ok"] is False and result["interrupted"] is True
    await wait.eventually(lambda: build_containers() == [], timeout=15, message="the interrupted build's container is gone")


async def test_sigterm_lets_in_flight_work_finish_within_the_deadline(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"daemon": {"shutdown_deadline": 8}, "docker": {"stop_timeout": 2}})
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="c", spec=kit.spec("ws-finish")))
    assert (await kit.events.result("c"))["ok"]
    # `sleep` as PID 1 ignores SIGTERM, so this stop takes the whole 2 s grace.
    await kit.send(agent, K.WORKSPACE_STOP, messages.WorkspaceRef(job_id="s", workspace_id="ws-finish"))
    await kit.events.wait_for("job.progress", job_id="s", phase="accepted")
    agent.signal(signal.SIGTERM)

    result = await kit.events.result("s", timeout=15)
    assert result["ok"] is True and result["interrupted"] is False
    assert agent.process is not None and agent.process.wait(timeout=15) == 0
    assert kit.container(agent, "ws-finish").status == "exited"


async def test_sighup_reloads_the_config_and_a_broken_one_is_refused(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"agent": {"labels": {"rack": "r1"}}})
    beat = await kit.events.wait_for("heartbeat", host_id=agent.host_id, where=lambda e: e.payload["docker_ok"])
    assert beat.payload["labels"] == {"rack": "r1"} and beat.payload["conditions"] == []
    assert beat.payload["cpus"] >= 1 and beat.payload["memory_mb"] > 0 and beat.payload["agent_version"]

    agent.config["agent"]["labels"] = {"rack": "r2"}
    agent.write_config()
    reload_at = time.time()
    agent.signal(signal.SIGHUP)
    await kit.events.wait_for("heartbeat", host_id=agent.host_id, where=lambda e: e.payload["labels"] == {"rack": "r2"})

    agent.config_path.write_text(yaml.safe_dump({**agent.config, "cleanup": {"high_watermark": 10, "low_watermark": 20}}))
    agent.signal(signal.SIGHUP)
    await wait.eventually(lambda: agent.logged("config reload failed; keeping the running config"), message="the refusal logged")
    refused = agent.logged("config reload failed; keeping the running config")[0]
    assert "low_watermark must be below high_watermark" in refused["a4c"]["error"]
    assert agent.running()
    later = time.time()
    await kit.events.wait_for("heartbeat", host_id=agent.host_id, where=lambda e: e.issued_at > later and e.payload["labels"] == {"rack": "r2"})
    assert reload_at < later


async def test_under_systemd_it_notifies_ready_pings_the_watchdog_and_says_stopping(kit: conftest.Kit, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    received: list[str] = []

    def got(state: str) -> bool:
        try:
            while True:
                received.extend(sock.recv(4096).decode().splitlines())
        except (TimeoutError, BlockingIOError):
            pass
        return state in received

    try:
        agent = kit.agent(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        await wait.eventually(lambda: got("READY=1"), message="READY=1")
        await wait.eventually(lambda: got("WATCHDOG=1") and received.count("WATCHDOG=1") >= 3, timeout=5, message="watchdog pings")
        assert agent.terminate() == 0
        await wait.eventually(lambda: got("STOPPING=1"), message="STOPPING=1")
    finally:
        sock.close()


async def test_metrics_and_healthz_answer_on_loopback(kit: conftest.Kit) -> None:
    agent = kit.agent()
    forged = kit.commands.envelope(K.WORKSPACE_START, messages.WorkspaceRef(workspace_id="ws-x"), host_id=agent.host_id, key=signing.new_key())
    await kit.commands.send_raw(agent.host_id, forged)

    def metrics() -> str:
        with urllib.request.urlopen(agent.metrics_url + "/metrics", timeout=2) as response:
            return response.read().decode()

    text = await wait.eventually(lambda: (m := metrics()) and 'a4c_agent_commands_rejected_total{reason="bad-signature"} 1.0' in m and m)
    assert 'a4c_agent_dependency_up{dependency="docker"} 1.0' in text
    assert 'a4c_agent_events_published_total{kind="heartbeat"}' in text

    def healthz() -> dict:
        with urllib.request.urlopen(agent.metrics_url + "/healthz", timeout=2) as response:
            assert response.status == 200
            return json.loads(response.read())

    health = await wait.eventually(healthz)
    assert health["status"] == "ok" and health["docker"] is True and health["kafka"] is True
    assert health["tasks"]["command-consumer"]["running"] is True
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(agent.metrics_url + "/nope", timeout=2)  # noqa: ASYNC210 - the agent is another process
    assert missing.value.code == 404


def _maps_aiohttp(pid: int) -> bool:
    """Whether the process has aiohttp's compiled modules mapped: imported, not merely installed."""
    return "/aiohttp/" in pathlib.Path(f"/proc/{pid}/maps").read_text()


async def test_the_access_listener_loads_its_http_stack_at_the_first_connection_and_refuses_what_is_not_a_grant(kit: conftest.Kit) -> None:
    port = ports.free_port()
    agent = kit.agent(overrides={"access": {"listen_port": port}})
    assert agent.process is not None
    pid = agent.process.pid
    assert ports.is_listening(port), "the listening socket is open from the start (its URL goes out in the first heartbeat)"
    assert not _maps_aiohttp(pid), "an agent that has served no stream does not carry aiohttp (agent/access.py)"

    def answer(path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = await asyncio.to_thread(answer, "/v1/stream")
    assert status == 403 and body["error"].startswith("grant refused"), body
    status, body = await asyncio.to_thread(answer, "/nope")
    assert status == 404 and "/v1/stream" in body["error"], body
    assert _maps_aiohttp(pid)
    assert agent.terminate() == 0
