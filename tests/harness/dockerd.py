"""A private Docker daemon for one test run.

Why these flags:

* everything the daemon writes lives in the run directory (``--data-root``,
  ``--exec-root``, ``--pidfile``, its socket, an empty ``--config-file`` so a
  machine's /etc/docker/daemon.json cannot change it), and it starts its own
  containerd there;
* ``--iptables=false --ip-masq=false``: the daemon never touches the
  machine's firewall, so two runs (two people, or CI next to a developer)
  cannot rewrite each other's rules, and a machine without working iptables
  still runs containers. Ports published on 127.0.0.1 are served by Docker's
  userland proxy, which needs no NAT;
* its own bridge (``a4c<run id>``, on a /24 no route uses yet) instead of
  ``docker0``, so two daemons never hand out the same container address.
  Tests never address containers by that address; it only carries the proxy's
  traffic.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import random
import shutil
import subprocess
import time

import docker
from docker import constants as docker_constants

from tests.harness import processes
from tests.harness import run as run_mod


class DockerDaemonError(RuntimeError):
    """The private daemon could not be started."""


def answers(host: str, timeout: float = 3.0) -> bool:
    """Whether a Docker daemon answers a ping at ``host`` (unix:// or tcp://)."""
    try:
        client = docker.APIClient(base_url=host, version=docker_constants.MINIMUM_DOCKER_API_VERSION, timeout=math.ceil(timeout))
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - requests' connection errors are not DockerException; any error means no
        return False
    finally:
        client.close()


class DockerDaemon:
    def __init__(self, run: run_mod.Run) -> None:
        self._run = run
        self._dir = run.subdir("docker")
        self.socket = self._dir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log = self._dir / "dockerd.log"
        self.bridge: str | None = None
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def start(self, timeout: float = 60.0) -> float:
        """Start the daemon and wait until it answers; returns the seconds it took."""
        if os.geteuid() != 0:
            raise DockerDaemonError(
                "no Docker daemon answers at DOCKER_HOST, and starting a private dockerd needs root: "
                "run the tests as root or point DOCKER_HOST at a daemon you may use"
            )
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise DockerDaemonError("dockerd is not installed (Debian package docker.io; `make deps` installs it)")
        config = self._dir / "daemon.json"
        config.write_text(json.dumps({}))
        argv = [
            dockerd,
            "--data-root",
            str(self._dir / "data"),
            "--exec-root",
            str(self._dir / "exec"),
            "--pidfile",
            str(self._dir / "dockerd.pid"),
            "--config-file",
            str(config),
            "-H",
            self.host,
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=true",
            "--log-level",
            "warn",
        ]
        self.bridge = _make_bridge(self._run)
        if self.bridge is not None:
            argv += ["--bridge", self.bridge]
        began = time.monotonic()
        try:
            self._process = self._run.track("dockerd", processes.spawn(argv, self.log))
            self._await(began + timeout)
        except BaseException:
            self.stop()  # also deletes the bridge: a failed start leaves nothing behind
            raise
        return time.monotonic() - began

    def _await(self, deadline: float) -> None:
        assert self._process is not None
        while not answers(self.host, timeout=1.0):
            if self._process.poll() is not None:
                raise DockerDaemonError(f"dockerd exited with {self._process.returncode}; its log:\n{processes.log_tail(self.log)}")
            if time.monotonic() > deadline:
                raise DockerDaemonError(f"dockerd did not answer in time; its log:\n{processes.log_tail(self.log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            # dockerd stops its containerd itself; give it time to do so.
            processes.stop(self._process, grace=30.0)
        if self.bridge is not None:
            run_mod.delete_bridge(self.bridge)


def _make_bridge(run: run_mod.Run) -> str | None:
    """Create the run's bridge on an unused /24; None (use docker0) where that is impossible."""
    if shutil.which("ip") is None:
        return None
    name = f"a4c{run.id}"[:15]
    used = _used_networks()
    candidates = [ipaddress.ip_network(f"172.{a}.{b}.0/24") for a in range(18, 32) for b in range(256)]
    random.shuffle(candidates)
    for net in candidates[:50]:
        if any(net.overlaps(u) for u in used):
            continue
        gateway = f"{next(net.hosts())}/{net.prefixlen}"
        steps = [
            ["ip", "link", "add", name, "type", "bridge"],
            ["ip", "addr", "add", gateway, "dev", name],
            ["ip", "link", "set", name, "up"],
        ]
        run.record_bridge(name)
        if all(subprocess.run(step, capture_output=True).returncode == 0 for step in steps):
            return name
        run_mod.delete_bridge(name)
        return None
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            nets.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        dest = line.split()[0] if line.split() else ""
        try:
            nets.append(ipaddress.IPv4Network(dest, strict=False))
        except ValueError:
            continue  # "default", "local", "broadcast" ... lines
    return [n for n in nets if n.prefixlen > 0]
