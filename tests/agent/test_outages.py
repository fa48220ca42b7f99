"""Kafka or Docker going away: the agent keeps retrying, never crash-loops, and says so when they are back."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request

import pytest

from shared import messages
from tests.agent import conftest, docker_proxy, driver
from tests.harness import kafka_broker as kafka_broker_mod
from tests.harness import run as run_mod
from tests.harness import wait

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


# This module stops or restarts its broker: it gets one of its own, not the run's shared one.
@pytest.fixture(scope="module")
def kafka_broker(module_kafka_broker):
    return module_kafka_broker


@pytest.fixture(scope="module")
def kafka_bootstrap(module_kafka_broker) -> str:
    return module_kafka_broker.bootstrap


def _health(agent: driver.AgentProcess) -> dict:
    try:
        with urllib.request.urlopen(agent.metrics_url + "/healthz", timeout=2) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        assert error.code == 503
        return json.loads(error.read())


async def test_a_docker_outage_holds_commands_back_and_is_reported_when_docker_is_back(kit: conftest.Kit, harness_run: run_mod.Run) -> None:
    proxy = docker_proxy.UnixProxy(harness_run.subdir(f"dp-{secrets.token_hex(3)}") / "docker.sock", kit.docker_host.removeprefix("unix://"))
    proxy.start()
    try:
        agent = kit.agent(overrides={"docker": {"base_url": proxy.url, "api_timeout": 3}})
        await kit.events.wait_for("heartbeat", host_id=agent.host_id, where=lambda e: e.payload["docker_ok"])

        stopped_at = time.time()
        proxy.stop()
        down = await kit.events.wait_for("heartbeat", host_id=agent.host_id, where=lambda e: e.issued_at > stopped_at and not e.payload["docker_ok"])
        assert "docker-unreachable" in down.payload["conditions"]
        assert _health(agent)["status"] == "degraded"
        await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="during", spec=kit.spec("ws-during")))

        proxy.start()
        back = await kit.events.wait_for("heartbeat", host_id=agent.host_id, where=lambda e: "docker-recovered" in e.payload["conditions"])
        assert back.payload["docker_ok"] is True
        result = await kit.events.result("during")
        assert result["ok"], result
        assert kit.container(agent, "ws-during").status == "running"
        assert agent.running() and not agent.logged("root task crashed")
        await wait.eventually(lambda: _health(agent)["status"] == "ok", message="healthy again")
    finally:
        proxy.stop()


async def test_a_broker_restart_is_survived_and_reported(kit: conftest.Kit, kafka_broker: kafka_broker_mod.KafkaBroker) -> None:
    agent = kit.agent(overrides={"kafka": {"request_timeout": 2}})
    await kit.events.wait_for("heartbeat", host_id=agent.host_id)

    kafka_broker.stop()
    try:
        await wait.eventually(lambda: _health(agent)["kafka"] is False, timeout=30, message="the agent noticed the broker is gone")
    finally:
        kafka_broker.start()
    # The restarted broker lost the events topic and its offsets: the test reads it afresh.
    await kit.events.reopen()
    recovered = await kit.events.wait_for(
        "heartbeat", host_id=agent.host_id, timeout=30, where=lambda e: "kafka-recovered" in e.payload["conditions"]
    )
    assert recovered.payload["docker_ok"] is True
    # The command topic came back (the broker lost it) and commands flow again.
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="after", spec=kit.spec("ws-after")))
    assert (await kit.events.result("after", timeout=30))["ok"]
    assert agent.running() and not agent.logged("root task crashed")
