"""`a4c up` runs the whole system, shows progress while starting, the `a4c` CLI drives it, a kill -9 restart
finds the same state, and Ctrl-C stops it with nothing left running."""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.cli import a4c_up
from tests.cli.a4c_up import STEP, Up
from tests.harness import ports, wait


@pytest.fixture
def up(docker_host):
    with a4c_up.private_home() as home:
        instance = Up(home, ports.free_port(), {"DOCKER_HOST": docker_host})
        try:
            yield instance
        finally:
            instance.stop()


def first_start_steps(port: int) -> list[str]:
    return [
        "Docker daemon",
        "PostgreSQL (embedded)",
        "Kafka-protocol broker (embedded tansu)",
        "database migrations",
        "first admin token",
        f"control plane on http://127.0.0.1:{port}",
        "admin token accepted",
        "enrolment token for the local agent",
        "local agent",
    ]


def test_a4c_up_shows_its_progress_runs_everything_the_cli_drives_a_kill_9_restart_keeps_the_state_and_ctrl_c_stops_it_all(
    up, docker_client, workspace_image
):
    text = up.start()
    starting, _, summary = text.partition("\nA4C is up in ")
    assert STEP.findall(starting) == first_start_steps(up.port), f"one line per stage, in order, each with its time:\n{text}"
    assert "  PostgreSQL (embedded) … ok" in up.before_ready and "A4C is up" not in up.before_ready, (
        f"the stages were printed while it was still starting; the last output before ready was:\n{up.before_ready}"
    )
    assert f"http://127.0.0.1:{up.port}/v1" in summary and "admin token" in summary and "dashboard" in summary
    token = (up.state / "admin.token").read_text().strip()
    server = f"http://127.0.0.1:{up.port}"
    assert "logged in" in up.a4c("login", "--server", server, "--token", token).stdout
    assert oct((pathlib.Path(up.env["XDG_CONFIG_HOME"]) / "a4c" / "config.yaml").stat().st_mode & 0o777) == "0o600"

    dockerfile = up.state.parent / "Dockerfile"
    dockerfile.write_text(f"FROM {workspace_image}\nRUN echo step-one-done && echo hello > /www/hello.txt\n")
    up.a4c("images", "register", "devbox", "--dockerfile", str(dockerfile))
    built = up.a4c("images", "build", "devbox", "--follow")
    assert "step-one-done" in built.stderr, "the build log streams"

    created = up.a4c(
        "-o",
        "json",
        "workspaces",
        "create",
        "dev",
        "--image",
        "devbox",
        "--cpus",
        "0.2",
        "--memory",
        "64",
        "--disk",
        "1",
        "--port",
        "8080",
        "--wait",
        "--timeout",
        "120",
    )
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

    stopped = up.ctrl_c(deadline=45)
    assert stopped.code == 0, stopped.output
    assert stopped.output.rstrip().endswith("stopping …\nstopped") and "Traceback" not in stopped.output, stopped.output
    below = stopped.below
    for component in ("postgres -D", "tansu", "a4c-controlplane run", "a4c-agent run"):
        assert any(component in line for line in below), f"{component} ran below a4c up: {below}"
    assert stopped.left == [], "nothing a4c up started is still running"
