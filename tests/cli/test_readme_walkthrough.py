"""The README's "first walk through", run as written against `a4c up`, offline.

Every line of the README's walkthrough block runs in bash, in order, with only
the server URL and the state directory swapped for this test's (the README
says 127.0.0.1:8080 and ~/.local/state/a4c). Then what a user would expect of
the workspace it made, from a Debian image whose command is bash:

* it is still `running` 60 s later, in the same container;
* `exec` ran a command in it and `logs` showed its output;
* a stop takes under 2 s (API to API, from the job's own timestamps);
* `start` and an `a4c up` restart keep its host port.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from tests.cli import a4c_up
from tests.cli.a4c_up import BIN, Up
from tests.harness import ports, wait
from tests.packaging import systemd_image

ROOT = pathlib.Path(__file__).resolve().parents[2]


def walkthrough() -> list[str]:
    """The README's walkthrough lines (comments and blank lines dropped)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### A first walk through\s+```sh\n(.*?)```", text, re.S)
    assert block, "the README has a walkthrough block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
def up(docker_host):
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("the walkthrough's a4c debian-image needs root and debootstrap (make deps installs it)")
    with a4c_up.private_home() as home:
        instance = Up(home, ports.free_port(), {"DOCKER_HOST": docker_host})
        try:
            yield instance
        finally:
            instance.stop()


def _get(up: Up, path: str) -> dict:
    token = (up.state / "admin.token").read_text().strip()
    request = urllib.request.Request(f"http://127.0.0.1:{up.port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _workspace(up: Up) -> dict:
    [ws] = [w for w in _get(up, "/v1/workspaces")["items"] if w["name"] == "alice-dev"]
    return ws


def _host_port(ws: dict) -> int:
    [port] = [p["host_port"] for p in ws["published_ports"] if p["container_port"] == 22]
    return port


def _when(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp)


def test_the_readme_walkthrough_runs_as_written_and_its_workspace_lives_like_a_machine(up, tmp_path):
    up.start()
    lines = walkthrough()
    script = "\n".join(
        line.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{up.port}").replace("~/.local/state/a4c", str(up.state)) for line in lines
    )
    env = {
        **up.env,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "A4C_STATE_DIR": str(up.state),
        # The root filesystem is kept where the suite keeps its other debootstrap (one per machine and recipe).
        "XDG_CACHE_HOME": str(systemd_image.cache_dir()),
    }
    # `export PATH=$PWD/.venv/bin:$PATH` must find this checkout's venv: run from the repository.
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"cd {tmp_path}\n" + script.replace("$PWD/.venv", str(BIN.parent))],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    said = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, said
    assert "alice-dev" in done.stdout
    assert re.search(r"^12\.\d+$", done.stdout, re.M), "exec printed the Debian version\n" + said
    assert "a4c: the image's command would exit at once" in done.stdout, "logs showed the workspace's output\n" + said

    ws = _workspace(up)
    container, port = ws["container_id"], _host_port(ws)
    began = time.monotonic()

    def same_container_running_60_s() -> bool:
        now = _workspace(up)
        assert (now["observed_state"], now["container_id"]) == ("running", container), now
        return time.monotonic() - began >= 60

    wait.wait_until(same_container_running_60_s, timeout=120, interval=2, message="alice-dev running in one container for 60 s")

    stop = json.loads(up.a4c("-o", "json", "workspaces", "stop", "alice-dev", "--wait").stdout)
    job = _get(up, f"/v1/jobs?workspace_id={ws['id']}&kind=workspace_stop")["items"][0]  # the newest (the README stopped it once too)
    took = (_when(job["finished_at"]) - _when(job["created_at"])).total_seconds()
    assert job["status"] == "succeeded" and took < 2.0, (took, job)
    assert stop["observed_state"] == "stopped"
    started = json.loads(up.a4c("-o", "json", "workspaces", "start", "alice-dev", "--wait").stdout)
    assert started["observed_state"] == "running" and _host_port(started) == port

    assert up.ctrl_c().code == 0
    up.start()
    wait.wait_until(lambda: _workspace(up)["observed_state"] == "running", timeout=60, message="alice-dev running after the restart")
    up.a4c("workspaces", "stop", "alice-dev", "--wait")
    again = json.loads(up.a4c("-o", "json", "workspaces", "start", "alice-dev", "--wait").stdout)
    assert _host_port(again) == port, (again["published_ports"], port)
