"""Test "servers": containers running systemd as PID 1, reachable over SSH on loopback.

Each server shares the host's network (``--network host``: it reaches the
control plane and the broker on 127.0.0.1 like the tests do) and gets its own
sshd port on 127.0.0.1 and its own host name. The harness's Docker socket is
mounted at /run/docker.sock, so an agent inside manages the same daemon the
tests inspect; a ``docker`` group with the socket's gid stands for the Docker
package an operator would have installed.

Why these ``docker run`` options: ``--privileged`` fails
on these machines; systemd as PID 1 needs SYS_ADMIN, no seccomp/AppArmor
profile in the way (it sets up its units' sandboxes), the cgroup tree
writable, and /run and /run/lock as tmpfs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import os
import pathlib
import subprocess
import tarfile
import typing

import docker

from tests.harness import ports, wait


class ServerError(RuntimeError):
    """A test server could not be started."""


def socket_path(docker_host: str) -> pathlib.Path:
    """The Docker socket to mount into servers; only a unix socket can be mounted."""
    if not docker_host.startswith("unix://"):
        raise ServerError(f"test servers get the Docker socket mounted; DOCKER_HOST={docker_host} is not a unix:// socket")
    return pathlib.Path(docker_host.removeprefix("unix://"))


_sh_numbers = itertools.count()


def _read_file(container: typing.Any, path: str) -> bytes:
    """A file's bytes from inside a container, through the archive (tar) API."""
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.getmembers()[0]
        extracted = archive.extractfile(member)
        return extracted.read() if extracted is not None else b""


@dataclasses.dataclass
class Server:
    name: str
    container: typing.Any  # docker.models.containers.Container
    ssh_port: int
    metrics_port: int

    def sh(self, script: str, *, check: bool = True) -> str:
        """Run ``script`` with /bin/sh as root inside the server; its combined output.

        The output goes through a file read back with Docker's archive API: an
        exec's attached stream lost a short command's whole output once under
        load (``id -u`` answered empty with exit 0), and a command cannot simply
        be run again, since it may change the server.
        """
        # On the container's own file system: the archive API does not read its tmpfs mounts (/run, /tmp).
        out = f"/var/tmp/a4c-test-sh-{os.getpid()}-{next(_sh_numbers)}"
        code, _ = self.container.exec_run(["sh", "-c", f"( {script} ) >{out} 2>&1"], demux=False)
        text = _read_file(self.container, out).decode(errors="replace")
        self.container.exec_run(["rm", "-f", out])
        if check and code != 0:
            raise AssertionError(f"{self.name}: `{script}` exited {code}:\n{text}")
        return text

    def rc(self, script: str) -> int:
        return self.container.exec_run(["sh", "-c", script])[0]

    def unit_property(self, unit: str, name: str) -> str:
        return self.sh(f"systemctl show {unit} --property={name} --value").strip()


@dataclasses.dataclass
class Fleet:
    """Starts servers and removes every one of them on :meth:`close`, whatever happened."""

    client: docker.DockerClient
    image: str
    workdir: pathlib.Path
    labels: dict[str, str]
    docker_socket: pathlib.Path
    mounts: dict[str, str] = dataclasses.field(default_factory=dict)  # host path -> path inside, read-only
    servers: list[Server] = dataclasses.field(default_factory=list)
    _containers: list[typing.Any] = dataclasses.field(default_factory=list)

    @property
    def private_key(self) -> pathlib.Path:
        return self.workdir / "id_ed25519"

    def _keys(self) -> pathlib.Path:
        if not self.private_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "a4c-rollout-test", "-f", str(self.private_key)], check=True)
        authorized = self.workdir / "authorized_keys"
        authorized.write_bytes(self.private_key.with_suffix(".pub").read_bytes())
        authorized.chmod(0o600)
        return authorized

    def start(self, names: typing.Sequence[str], *, boot_timeout: float = 60) -> list[Server]:
        authorized = self._keys()
        socket_gid = os.stat(self.docker_socket).st_gid
        started = []
        for name in names:
            ssh_port, metrics_port = ports.free_port(), ports.free_port()
            sshd = self.workdir / f"sshd-{name}.conf"
            sshd.write_text(f"Port {ssh_port}\nListenAddress 127.0.0.1\nPasswordAuthentication no\nUseDNS no\n")
            volumes = {
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                str(sshd): {"bind": "/etc/ssh/sshd_config.d/a4c-test.conf", "mode": "ro"},
                str(authorized): {"bind": "/root/.ssh/authorized_keys", "mode": "ro"},
                str(self.docker_socket): {"bind": "/run/docker.sock", "mode": "rw"},
                **{src: {"bind": dst, "mode": "ro"} for src, dst in self.mounts.items()},
            }
            try:
                container = self.client.containers.run(
                    self.image,
                    detach=True,
                    name=f"{name}-{self.labels_id}",
                    hostname=name,
                    labels=self.labels,
                    network_mode="host",
                    cgroupns="host",
                    cap_add=["SYS_ADMIN"],
                    security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                    tmpfs={"/run": "", "/run/lock": ""},
                    environment={"container": "docker"},
                    volumes=volumes,
                )
            except docker.errors.DockerException as error:
                raise ServerError(f"starting server {name} failed: {error}") from error
            self._containers.append(container)
            started.append(Server(name, container, ssh_port, metrics_port))
        for server in started:
            self._boot(server, boot_timeout)
            # "Docker is installed": its group owns the socket.
            server.sh(f"getent group docker >/dev/null || groupadd --system --non-unique --gid {socket_gid} docker")
        self.servers.extend(started)
        return started

    @property
    def labels_id(self) -> str:
        return "-".join(self.labels.values())[:24] or "a4c"

    def _boot(self, server: Server, timeout: float) -> None:
        def booted() -> bool:
            server.container.reload()
            if server.container.status != "running":
                raise ServerError(f"{server.name} stopped while booting:\n{server.container.logs(tail=40).decode(errors='replace')}")
            state = server.sh("systemctl is-system-running || true").strip()
            if state == "degraded":
                raise ServerError(f"{server.name} booted degraded:\n{server.sh('systemctl --failed --no-pager')}")
            return state == "running" and ports.is_listening(server.ssh_port)

        wait.wait_until(booted, timeout=timeout, interval=0.2, message=f"{server.name}: systemd running and sshd on 127.0.0.1:{server.ssh_port}")

    def close(self) -> list[str]:
        """Remove every container started; what could not be removed."""
        problems = []
        for container in self._containers:
            with contextlib.suppress(docker.errors.NotFound):
                try:
                    container.remove(force=True, v=True)
                except docker.errors.DockerException as error:
                    problems.append(f"{container.name}: {error}")
        self._containers.clear()
        return problems
