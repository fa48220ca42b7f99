"""`a4c up` supervises its children: kill -9 of the agent restarts it (same identity) while the API answers
throughout; PostgreSQL, the broker and the control plane come back the same way; an agent that keeps crashing
makes `a4c up` give up, say why, stop everything and exit 1."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import threading
import time
import urllib.request

import psutil
import pytest

from tests.cli import a4c_up
from tests.cli.a4c_up import Up
from tests.harness import ports, wait


@pytest.fixture
def up(docker_host):
    with a4c_up.private_home() as home:
        instance = Up(home, ports.free_port(), {"DOCKER_HOST": docker_host})
        try:
            yield instance
        finally:
            instance.stop()


def _get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=2) as resp:
        return json.loads(resp.read())


def _agent_pid(up: Up) -> int:
    pid = int((up.state / "run" / "agent.pid").read_text())
    assert up.process is not None
    assert pid in [p.pid for p in psutil.Process(up.process.pid).children()], "the pid file names a child of a4c up"
    assert "a4c-agent run" in " ".join(psutil.Process(pid).cmdline())
    return pid


class Poller:
    """``GET /v1/me`` every 100 ms in the background; every failure is kept."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.ok = 0
        self.failures: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.1):
            try:
                _get(self.url, self.token)
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - any failure is what this records
                self.failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join(5)


def test_kill_9_of_the_agent_restarts_it_with_its_identity_while_the_api_answers_throughout(up):
    up.start()
    server = f"http://127.0.0.1:{up.port}"
    token = (up.state / "admin.token").read_text().strip()
    (host,) = [h for h in _get(f"{server}/v1/hosts", token)["items"] if h["name"] == socket.gethostname()]
    first = _agent_pid(up)

    with Poller(f"{server}/v1/me", token) as poller:
        killed_at = datetime.datetime.now(datetime.UTC)
        os.kill(first, signal.SIGKILL)

        def restarted_and_heartbeating() -> bool:
            pid = _agent_pid(up)
            assert pid != first, "a new agent process"
            (again,) = _get(f"{server}/v1/hosts", token)["items"]
            assert again["id"] == host["id"] and again["status"] == "active", again
            assert datetime.datetime.fromisoformat(again["last_heartbeat_at"]) > killed_at, again["last_heartbeat_at"]
            return True

        wait.wait_until(restarted_and_heartbeating, timeout=90, interval=0.2, message="the agent restarted and heartbeating again")
        time.sleep(1)  # and a moment after

    assert poller.failures == [], "the API answered throughout"
    assert poller.ok > 10, poller.ok
    output = up.running_output()
    assert "agent exited with signal 9 (SIGKILL); restarting in 0.5 s (restart 1)" in output, output
    assert "agent exited with signal 9 (SIGKILL); restarting in 0.5 s (restart 1)" in (up.state / "logs" / "up.log").read_text()
    status = json.loads((up.state / "run" / "children.json").read_text())
    assert status["agent"]["restarts"] == 1 and status["postgres"]["restarts"] == 0, status

    stopped = up.ctrl_c(deadline=60)
    assert stopped.code == 0, stopped.output
    assert "restarted while up: agent 1\nstopping …\nstopped" in stopped.output, stopped.output
    assert stopped.left == [], "nothing a4c up started is still running"


def test_an_agent_that_keeps_crashing_makes_a4c_up_give_up_stop_everything_and_exit_1(up):
    up.start()
    below = psutil.Process(up.process.pid).children(recursive=True)
    # A damaged identity: every restart of the agent fails at once (agent/identity.py refuses it).
    (up.state / "agent" / "identity.json").write_text("{}")
    os.kill(_agent_pid(up), signal.SIGKILL)

    code = up.process.wait(120)
    output = up.output()
    assert code == 1, output
    assert "agent exited with signal 9 (SIGKILL); restarting in 0.5 s (restart 1)" in output, output
    assert "restarting in 4.0 s (restart 4)" in output, output
    assert ": 5 crashes within 120 s; giving up and stopping everything; its log (" in output, output
    assert "not a valid identity file" in output, "the agent's own words, from its log"
    assert "Traceback" not in output.split("giving up", 1)[0], output
    assert output.rstrip().endswith("stopping …\nstopped"), output

    def all_gone() -> bool:
        return not [p for p in below if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    wait.wait_until(all_gone, timeout=20, interval=0.1, message="everything a4c up started has stopped")


def test_kill_9_of_postgresql_the_broker_and_the_control_plane_in_turn_restarts_each_and_the_agent_is_heard_again(up):
    up.start()
    server = f"http://127.0.0.1:{up.port}"
    token = (up.state / "admin.token").read_text().strip()
    for name in ("postgres", "kafka", "controlplane"):
        before = int((up.state / "run" / f"{name}.pid").read_text())
        killed_at = datetime.datetime.now(datetime.UTC)
        os.kill(before, signal.SIGKILL)

        def healed() -> bool:
            pid = int((up.state / "run" / f"{name}.pid").read_text())
            assert pid != before and psutil.Process(pid).is_running()
            (host,) = _get(f"{server}/v1/hosts", token)["items"]
            assert host["status"] == "active" and datetime.datetime.fromisoformat(host["last_heartbeat_at"]) > killed_at, host
            return True

        wait.wait_until(healed, timeout=120, interval=0.5, message=f"{name} restarted and the agent heard again")
        assert f"{name} exited with signal 9 (SIGKILL); restarting in 0.5 s (restart 1)" in up.running_output()
    stopped = up.ctrl_c(deadline=60)
    assert stopped.code == 0, stopped.output
    assert "restarted while up: postgres 1, kafka 1, controlplane 1\nstopping …\nstopped" in stopped.output, stopped.output
    assert stopped.left == [], "nothing a4c up started is still running"
