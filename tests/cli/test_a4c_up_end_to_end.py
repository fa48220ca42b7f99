"""`a4c up` runs the whole system, the `a4c` CLI drives it, and a kill -9 restart finds the same state."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from tests.harness import ports, processes, wait

BIN = pathlib.Path(sys.executable).parent


class Up:
    def __init__(self, state: pathlib.Path, port: int, docker_host: str) -> None:
        self.state, self.port = state, port
        self.log = state.parent / "up.log"
        self.env = {**os.environ, "DOCKER_HOST": docker_host, "XDG_CONFIG_HOME": str(state.parent / "config")}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = processes.spawn(
            [str(BIN / "a4c"), "up", "--state-dir", str(self.state), "--port", str(self.port)], self.log, env=self.env
        )
        wait.wait_until(self._ready, timeout=120, interval=0.2, message=f"a4c up ready\n{processes.log_tail(self.log)}")

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"a4c up exited with {self.process.returncode}:\n{processes.log_tail(self.log)}")
        return "Press Ctrl-C to stop." in self.log.read_text(errors="replace")

    def a4c(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "a4c"), *args], capture_output=True, text=True, env=self.env, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"a4c {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def kill9(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, grace=60, sig=signal.SIGINT)


@pytest.fixture
def up(docker_host):
    # Not under pytest's tmp_path: its parents are 0700, and the embedded
    # PostgreSQL runs as its own user (as root), which must reach its data.
    home = pathlib.Path(tempfile.mkdtemp(prefix="a4c-up-test-"))
    home.chmod(0o711)
    instance = Up(home / "state", ports.free_port(), docker_host)
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_a4c_up_runs_everything_the_cli_drives_it_and_a_kill_9_restart_keeps_the_state(up, docker_client, workspace_image):
    up.start()
    text = up.log.read_text()
    assert f"http://127.0.0.1:{up.port}/v1" in text and "admin token" in text and "dashboard" in text
    token = (up.state / "admin.token").read_text().strip()
    server = f"http://127.0.0.1:{up.port}"
    assert "logged in" in up.a4c("login", "--server", server, "--token", token).stdout
    assert oct((pathlib.Path(up.env["XDG_CONFIG_HOME"]) / "a4c" / "config.yaml").stat().st_mode & 0o777) == "0o600"

    dockerfile = up.state.parent / "Dockerfile"
    dockerfile.write_text(f"FROM {workspace_image}\nRUN echo step-one-done && echo hello > /www/hello.txt\n")
    up.a4c("images", "register", "devbox", "--dockerfile", str(dockerfile))
    built = up.a4c("images", "build", "devbox", "--follow")
    assert "step-one-done" in built.stderr, "the build log streams"

    created = up.a4c("-o", "json", "workspaces", "create", "dev", "--image", "devbox", "--cpus", "0.2", "--memory", "64", "--disk", "1", "--port", "8080", "--wait", "--timeout", "120")
    ws = json.loads(created.stdout)
    assert ws["observed_state"] == "running" and ws["container_id"]
    listed = json.loads(up.a4c("-o", "json", "workspaces", "list").stdout)
    assert [(w["name"], w["observed_state"]) for w in listed] == [("dev", "running")]
    running = docker_client.containers.list(filters={"label": f"a4c.workspace={ws['id']}"})
    assert [c.id for c in running] == [ws["container_id"]]

    found = json.loads(up.a4c("-o", "json", "jobs", "search", "kind:image_build status:succeeded").stdout)
    assert [(j["kind"], j["image_name"]) for j in found["jobs"]] == [("image_build", "devbox")]

    up.kill9()
    up.start()

    def same_state() -> bool:
        again = json.loads(up.a4c("-o", "json", "workspaces", "list").stdout)
        return [(w["id"], w["observed_state"]) for w in again] == [(ws["id"], "running")]

    wait.wait_until(same_state, timeout=60, interval=1, message="the same workspace, running, after kill -9 and restart")
    containers = docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws['id']}"})
    assert len(containers) == 1, "no duplicate container"

    deleted = up.a4c("workspaces", "delete", "dev", "--wait")
    assert deleted.returncode == 0
    assert not docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws['id']}"})
