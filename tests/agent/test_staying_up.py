"""A workspace stays up with any image until it is stopped; one that does not is stopped and reported failed."""

from __future__ import annotations

import time

import pytest

from agent.domain import main_process
from shared import messages
from tests.agent import conftest
from tests.harness import wait

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


async def _stays_running(kit: conftest.Kit, agent, workspace_id: str, container_id: str, seconds: float) -> None:
    """Poll for ``seconds``: every look must find the same container running, never restarted."""
    began = time.monotonic()

    def held() -> bool:
        container = kit.container(agent, workspace_id)
        assert container.id == container_id and container.status == "running", (container.id, container.status)
        assert container.attrs["RestartCount"] == 0, container.attrs["RestartCount"]
        return time.monotonic() - began >= seconds

    await wait.eventually(held, timeout=seconds + 10, interval=0.5, message=f"{workspace_id} running for {seconds} s")


async def test_an_image_whose_command_is_a_shell_stays_up_under_init_and_stops_at_once(kit: conftest.Kit) -> None:
    # The base image's CMD is ["sh"]: without a terminal it would exit at once (code 0) and restart-loop.
    agent = kit.agent(overrides={"docker": {"stop_timeout": 10}})
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="sh-c", spec=kit.spec("ws-shell", command=None)))
    result = await kit.events.result("sh-c")
    assert result["ok"], result
    container = kit.container(agent, "ws-shell")
    assert container.attrs["HostConfig"]["Init"] is True
    assert container.attrs["Config"]["Cmd"] == main_process.KEEP_ALIVE
    await _stays_running(kit, agent, "ws-shell", result["result"]["container_id"], 5)

    began = time.monotonic()
    await kit.send(agent, K.WORKSPACE_STOP, messages.WorkspaceRef(job_id="sh-s", workspace_id="ws-shell"))
    stopped = await kit.events.result("sh-s")
    took = time.monotonic() - began
    assert stopped["ok"] and stopped["result"]["state"] == "stopped", stopped
    assert took < 2.0, f"stop took {took:.1f} s with a 10 s stop timeout: SIGTERM did not reach the keep-alive"
    assert kit.container(agent, "ws-shell").attrs["State"]["ExitCode"] == 0


async def test_a_container_that_exits_at_once_fails_its_create_with_exit_code_and_log_tail(kit: conftest.Kit) -> None:
    agent = kit.agent()
    spec = kit.spec("ws-boom", command=["sh", "-c", "echo boom; exit 3"])
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="boom", spec=spec))
    result = await kit.events.result("boom")
    assert result["ok"] is False
    assert "did not stay up" in result["error"] and "exit code 3" in result["error"] and "boom" in result["error"], result
    failed = await kit.events.wait_for("workspace.state", workspace_id="ws-boom", state="failed")
    assert failed.payload["exit_code"] == 3 and failed.payload["restart_count"] >= 0
    assert "boom" in failed.payload["reason"] and "restarted" in failed.payload["reason"]
    assert not kit.events.of("workspace.state", workspace_id="ws-boom", state="running")
    # Stopped, so Docker no longer restarts it; kept for its logs.
    await wait.eventually(lambda: kit.container(agent, "ws-boom").status == "exited", message="the failed container is stopped")


async def test_a_container_that_keeps_exiting_later_is_stopped_and_reported_failed(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"docker": {"crash_loop_exits": 2}})
    spec = kit.spec("ws-loop", command=["sh", "-c", "sleep 1; echo bang; exit 4"])
    await kit.send(agent, K.WORKSPACE_CREATE, messages.WorkspaceCommand(job_id="loop", spec=spec))
    assert (await kit.events.result("loop"))["ok"], "it outlives the settle period"
    failed = await kit.events.wait_for("workspace.state", workspace_id="ws-loop", state="failed", timeout=40)
    assert failed.payload["exit_code"] == 4 and failed.payload["restart_count"] >= 1, failed.payload
    assert "crash loop" in failed.payload["reason"] and "bang" in failed.payload["reason"], failed.payload["reason"]
    await wait.eventually(lambda: kit.container(agent, "ws-loop").status == "exited", message="the crash-looping container is stopped")
