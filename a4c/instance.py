"""One ``a4c up`` per state directory, and the port its API listens on.

The lock is an exclusive ``fcntl.flock`` on ``<state>/up.lock``, held for
the process's life. It is released by the kernel when the process ends, however it
ends (``kill -9`` included), so a lock left by a dead instance never blocks
the next one, and a pid in a file is never trusted alone. The lock is taken
before anything else happens — before a leftover child is reaped by its pid
file (a4c/embedded.py ``stop_leftover``), which would otherwise kill the
running instance's children. The holder writes ``{"pid": …, "url": …}`` into
the lock file so that a second instance can say who runs.

The port is checked next, still before anything starts, and remembered in
``ports.json`` only once the control plane has served on it (a4c/up.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import socket
import time

from a4c import embedded


class AlreadyRunning(Exception):
    """Another ``a4c up`` holds the state directory; the message says which (pid, API URL)."""


class Lock:
    def __init__(self, state: pathlib.Path) -> None:
        self.path = state / "up.lock"
        self.fd: int | None = None

    def acquire(self) -> Lock:
        """Take the lock, or raise :class:`AlreadyRunning` at once (never waits for the holder)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # No O_TRUNC: the holder's pid and URL must survive a look by a second instance.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self._holder()) from None
        self.fd = fd
        self.record(url=None)
        return self

    def record(self, *, url: str | None) -> None:
        """Say who holds the lock (this process) and, once known, where its API listens."""
        assert self.fd is not None
        data = json.dumps({"pid": os.getpid(), "url": url}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def _holder(self) -> str:
        # The holder writes its pid right after locking; give it a moment to do so.
        deadline = time.monotonic() + 2
        holder: dict = {}
        while time.monotonic() < deadline:
            try:
                holder = json.loads(self.path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            if holder.get("pid") and holder.get("url"):
                break
            time.sleep(0.05)
        pid = holder.get("pid") or "unknown"
        url = holder.get("url") or "not known yet"
        return (
            f"already running (pid {pid}, API on {url}) with its state in {self.path.parent}: "
            f"stop it first (Ctrl-C where it runs, or kill {pid}), or give another --state-dir"
        )


def api_url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def choose_port(state: pathlib.Path, host: str, port: int) -> int:
    """``--port``, else the one remembered in ``ports.json``, else 8080 if free, else any free one; it must be free."""
    if not port:
        remembered = state / "ports.json"
        port = json.loads(remembered.read_text()).get("http", 0) if remembered.exists() else 0
        if not port:
            port = 8080 if _bindable(host, 8080) else embedded.free_port()
    if not _bindable(host, port):
        raise embedded.EmbeddedError(f"port {port} is in use on {host}: stop what listens there or run a4c up --port OTHER")
    return port


def _bindable(host: str, port: int) -> bool:
    """Whether the control plane could listen there: a bind (as uvicorn's, with SO_REUSEADDR) succeeds."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
