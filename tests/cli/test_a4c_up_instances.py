"""One `a4c up` per state directory, several side by side.

* A second `a4c up` on the same state directory refuses at once, exit 1,
  naming the running one's pid and URL, and touches nothing: the first keeps
  serving with the same dockerd and PostgreSQL (a4c/instance.py's lock).
* Two `a4c up` with different state directories each start a dockerd of their
  own, each on a bridge and /24 of its own (a4c/embedded.py ``Bridge``): their
  workspaces get different addresses, and each instance's published port
  reaches its own container.
* A port in use is refused before anything starts, and not remembered.

The dockerd cases need what `a4c up` needs to start one (root, dockerd, ip)
and no daemon at the default socket; DOCKER_HOST is unset for them ("").
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import typing
import urllib.request

import docker
import psutil
import pytest
import yaml

from a4c import embedded
from a4c import up as up_mod
from tests.cli import a4c_up
from tests.cli.a4c_up import BIN, Up
from tests.harness import base_image, ports, wait


def _needs_own_dockerd() -> None:
    if os.geteuid() != 0 or shutil.which("dockerd") is None or shutil.which("ip") is None:
        pytest.skip("needs root, dockerd and ip: the case where a4c up starts its own daemon")
    if embedded.docker_answers(up_mod.DEFAULT_DOCKER_SOCKET):
        pytest.skip(f"a Docker daemon answers at {up_mod.DEFAULT_DOCKER_SOCKET}: a4c up would use it rather than start its own")


@pytest.fixture
def homes() -> typing.Iterator[typing.Callable[[], pathlib.Path]]:
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(a4c_up.private_home())


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _stop(up: Up) -> None:
    """Teardown: stop it, and remove its dockerd's bridge should a forced stop have left it."""
    up.stop()
    embedded.Bridge(up.state / "docker").delete()


def _pids(up: Up) -> dict[str, int]:
    return {name: entry["pid"] for name, entry in json.loads((up.state / "run" / "children.json").read_text()).items()}


def _readyz(up: Up) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{up.port}/readyz", timeout=2) as resp:
        return resp.status == 200


def test_a_second_a4c_up_on_the_same_state_dir_refuses_at_once_with_the_running_pid_and_the_first_keeps_serving(homes):
    _needs_own_dockerd()
    up = Up(homes(), ports.free_port(), {"DOCKER_HOST": ""})
    try:
        up.start()
        before = _pids(up)
        assert {"dockerd", "postgres", "kafka", "controlplane", "agent"} <= set(before), before
        kept = {name: (up.state / name).read_bytes() for name in ("ports.json", "run/children.json", "run/dockerd.pid", "run/postgres.pid")}

        # The same port too: the lock is looked at before the port, so the answer is "already running".
        began = time.monotonic()
        second = subprocess.run(up.argv(), capture_output=True, text=True, env=up.env, timeout=60)
        took = time.monotonic() - began

        assert second.returncode == 1, f"exit {second.returncode}\n{second.stdout}\n{second.stderr}"
        assert took < 10, f"it refused at once, not after {took:.1f} s"
        assert f"already running (pid {up.process.pid}, API on http://127.0.0.1:{up.port})" in second.stderr, second.stderr
        errors = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: ") and "Traceback" not in second.stdout + second.stderr, second.stderr
        assert "starting" not in second.stdout, f"it started nothing:\n{second.stdout}"

        assert _readyz(up), "the first still serves"
        assert up.process.poll() is None
        assert _pids(up) == before, "no child of the first was restarted"
        for name, pid in before.items():
            assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE, f"{name} ({pid}) still runs"
        assert {name: (up.state / name).read_bytes() for name in kept} == kept, "the second touched none of its files"
        assert embedded.docker_answers(f"unix://{up.state / 'docker' / 'docker.sock'}")

        stopped = up.ctrl_c(deadline=60)
        assert stopped.code == 0 and stopped.left == [], stopped.output
        # Once the first is gone, the lock is free: the same directory starts again (and the same port).
        again = up.start()
        assert "already running" not in again and _pids(up)["dockerd"] != before["dockerd"]
    finally:
        _stop(up)


def _web_image(client: docker.DockerClient, page: str) -> str:
    """busybox httpd serving ``page`` on 8080, built in the instance's own dockerd from the offline base image."""
    base_image.build(client)
    tag = f"a4c-test/up-web:{page}"
    dockerfile = f'FROM {base_image.TAG}\nRUN mkdir -p /www && echo {page} > /www/index.html\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


def _fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as resp:
        return resp.read().decode().strip()


def test_two_a4c_up_with_different_state_dirs_each_reach_only_their_own_workspace_through_their_published_ports(
    homes, make_database, kafka_bootstrap, topic_prefix
):
    _needs_own_dockerd()
    had_docker0 = _link_exists("docker0")
    ups: list[Up] = []
    try:
        for name in ("one", "two"):
            home = homes()
            # The harness's PostgreSQL and broker (databases and topics of their own) keep this short;
            # what is shared or not here is Docker's network.
            config = home / "a4c-up.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "database": {"url": make_database()},
                        "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": f"{topic_prefix}{name}"},
                    }
                )
            )
            ups.append(Up(home, ports.free_port(), {"DOCKER_HOST": ""}, "--config", str(config)))
        for up in ups:
            up.start()

        seen = []
        for name, up in zip(("one", "two"), ups, strict=True):
            sock = f"unix://{up.state / 'docker' / 'docker.sock'}"
            client = docker.DockerClient(base_url=sock, version="auto", timeout=120)
            try:
                image = _web_image(client, f"instance-{name}")
                up.env.update(A4C_SERVER=f"http://127.0.0.1:{up.port}", A4C_TOKEN=(up.state / "admin.token").read_text().strip())
                created = up.a4c(
                    "-o",
                    "json",
                    "workspaces",
                    "create",
                    "web",
                    "--image-ref",
                    image,
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
                assert ws["observed_state"] == "running", ws
                (port,) = [p for p in ws["published_ports"] if p["container_port"] == 8080]
                assert port["host_ip"] == "127.0.0.1", port
                container = client.containers.get(ws["container_id"])
                address = container.attrs["NetworkSettings"]["IPAddress"]
                bridge = json.loads((up.state / "docker" / "bridge.json").read_text())
                assert ipaddress.ip_address(address) in ipaddress.ip_network(bridge["subnet"]), (address, bridge)
                seen.append({"name": name, "port": port["host_port"], "address": address, "bridge": bridge})
            finally:
                client.close()

        one, two = seen
        assert one["bridge"]["bridge"] != two["bridge"]["bridge"] and not ipaddress.ip_network(one["bridge"]["subnet"]).overlaps(
            ipaddress.ip_network(two["bridge"]["subnet"])
        ), seen
        assert one["address"] != two["address"], seen
        for entry in seen:
            # The workspace's container may still be starting httpd: poll with a deadline.
            page = wait.wait_until(lambda: _fetch(entry["port"]), timeout=30, interval=0.2, message=f"instance {entry['name']}'s page")
            assert page == f"instance-{entry['name']}", f"port {entry['port']} of instance {entry['name']} served {page!r}"
        assert not _link_exists("docker0") or had_docker0, "neither dockerd made docker0"

        for up, entry in zip(ups, seen, strict=True):
            stopped = up.ctrl_c(deadline=60)
            assert stopped.code == 0 and stopped.left == [], stopped.output
            assert not _link_exists(entry["bridge"]["bridge"]), "its bridge is gone with its dockerd"
    finally:
        for up in ups:
            _stop(up)


def test_a_port_in_use_is_refused_before_anything_starts_and_not_remembered(homes):
    home = homes()
    state = home / "state"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config")}
        done = subprocess.run(
            [str(BIN / "a4c"), "up", "--state-dir", str(state), "--port", str(port)], capture_output=True, text=True, env=env, timeout=60
        )
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.stderr.strip() == f"error: port {port} is in use on 127.0.0.1: stop what listens there or run a4c up --port OTHER", done.stderr
    assert "Docker daemon" not in done.stdout, f"checked before anything else:\n{done.stdout}"
    assert not (state / "ports.json").exists(), "the port that failed is not remembered"
    assert not (state / "logs").exists() and not (state / "run").exists(), "nothing started"
