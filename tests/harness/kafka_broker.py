"""Apache Kafka for the tests: one KRaft node (broker and controller) from Maven Central's jars.

The jars come from :mod:`tests.harness.jvm` (``jvm/kafka/pom.xml``). Storage is
formatted under the run directory on first start and kept across restarts, so
the fault operations mean what they say:

- :meth:`KafkaBroker.kill` then :meth:`start`: a crash, every topic and offset kept;
- :meth:`restart` with ``lose_data=True``: "the broker lost everything";
- :meth:`stop` then :meth:`start`: down for as long as the test waits in between;
- :meth:`freeze` / :meth:`thaw`: a hung broker (SIGSTOP), port open, nothing answers.

Topics are never created on first use (``auto.create.topics.enable=false``, as
in production): the product creates every topic it needs itself. The broker is
ready when it answers ApiVersions and has logged that it started.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid

from tests.harness import jvm, ports, processes
from tests.harness import run as run_mod

_STARTED = re.compile(r"Kafka Server started|KafkaRaftServer.*started", re.IGNORECASE)
_VERSION = re.compile(r"Kafka version: (\S+)")


class KafkaBrokerError(RuntimeError):
    """The broker could not be started."""


def answers(port: int, timeout: float = 1.0) -> bool:
    """Whether a Kafka broker on 127.0.0.1:port answers ApiVersions without error."""
    return api_versions(port, timeout) is not None


def api_versions(port: int, timeout: float = 1.0) -> dict[int, tuple[int, int]] | None:
    """{api key: (min, max version)} from an ApiVersions v0 request, or None if nothing sane answered."""
    client_id = b"a4c-harness"
    request = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _read(sock, 4))
            body = _read(sock, size)
        correlation_id, error_code, count = struct.unpack(">ihi", body[:10])
        if correlation_id != 7 or error_code != 0:
            return None
        return {key: (low, high) for key, low, high in struct.iter_unpack(">hhh", body[10 : 10 + 6 * count])}
    except (OSError, struct.error):
        return None


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


class KafkaBroker:
    """One Apache Kafka node on free loopback ports, with its data under ``directory``."""

    def __init__(
        self,
        run: run_mod.Run | None = None,
        port: int | None = None,
        *,
        directory: pathlib.Path | None = None,
        heap: str = "320m",
        extra_properties: dict[str, str] | None = None,
        listeners: dict[str, tuple[int, str]] | None = None,
        scram_users: dict[str, str] | None = None,
    ) -> None:
        if directory is None:
            if run is None:
                raise ValueError("a KafkaBroker needs a run or a directory")
            directory = run.subdir(f"kafka-{uuid.uuid4().hex[:6]}")
        self._run = run
        self.directory = directory
        self.port = port or ports.free_port()
        self.controller_port = ports.free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = directory / "kafka.log"
        self.data = directory / "data"
        self._heap = heap
        self._extra = dict(extra_properties or {})
        # Extra listeners (e.g. SASL_SSL): name -> (port, security protocol).
        self._listeners = dict(listeners or {})
        # SCRAM-SHA-512 credentials written into the metadata log when storage is formatted.
        self._scram_users = dict(scram_users or {})
        self._process: subprocess.Popen | None = None
        self.version: str | None = None
        self._cluster_id = uuid.uuid4().hex[:22]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self.running else None

    def properties(self) -> dict[str, str]:
        names = {"PLAINTEXT": (self.port, "PLAINTEXT"), **self._listeners}
        listeners = [f"{name}://127.0.0.1:{port}" for name, (port, _) in names.items()]
        protocols = [f"{name}:{proto}" for name, (_, proto) in names.items()]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{self.controller_port}"]),
            "advertised.listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": ",".join([*protocols, "CONTROLLER:PLAINTEXT"]),
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data),
            # One node: internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Production's choice: the product creates its topics itself.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            # Tests start and stop consumers all the time: no 3 s grace before
            # a group's first rebalance, and short sessions allowed.
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "500",
            # Small segments and no fsync wait: a test broker, not a durable one.
            "log.segment.bytes": str(16 * 1024 * 1024),
            "log.retention.check.interval.ms": "60000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(2 * 1024 * 1024),
        }
        props.update(self._extra)
        return props

    def _write_config(self) -> pathlib.Path:
        path = self.directory / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        return path

    def _java(self, *args: str) -> list[str]:
        lib = jvm.fetch("kafka")
        return [
            jvm.java(),
            f"-Xms{self._heap}",
            f"-Xmx{self._heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xss512k",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={jvm.resource('kafka', 'log4j2.properties')}",
            "-cp",
            f"{lib}/*",
            *args,
        ]

    def _format(self, config: pathlib.Path) -> None:
        if (self.data / "meta.properties").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        argv = self._java("kafka.tools.StorageTool", "format", "-t", self._cluster_id, "-c", str(config), "--ignore-formatted")
        for user, password in self._scram_users.items():
            argv += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise KafkaBrokerError(f"formatting Kafka storage failed:\n{(done.stdout + done.stderr)[-2000:]}")

    def start(self, timeout: float = 90.0) -> float:
        """Start on the same ports as before and wait until it serves; returns the seconds it took."""
        if self.running:
            return 0.0
        began = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._format(config)
        offset = self.log.stat().st_size if self.log.exists() else 0
        process = processes.spawn(self._java("kafka.Kafka", str(config)), self.log)
        self._process = self._run.track("kafka", process) if self._run is not None else process
        try:
            while True:
                if self._process.poll() is not None:
                    raise KafkaBrokerError(f"Kafka exited with {self._process.returncode}; its log:\n{processes.log_tail(self.log)}")
                text = _read_from(self.log, offset)
                if _STARTED.search(text) and answers(self.port):
                    found = _VERSION.search(text)
                    self.version = found.group(1) if found else self.version
                    break
                if time.monotonic() - began > timeout:
                    raise KafkaBrokerError(f"Kafka did not start on {self.bootstrap} within {timeout:g} s:\n{processes.log_tail(self.log)}")
                time.sleep(0.1)
        except BaseException:
            self.kill()
            raise
        return time.monotonic() - began

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): the data stays."""
        if self._process is not None:
            self.thaw()
            processes.stop(self._process, grace=30.0)

    def kill(self) -> None:
        """Stop at once, as a crash would: the data stays."""
        if self._process is not None:
            processes.kill(self._process)

    def restart(self, *, lose_data: bool = False) -> float:
        """Kill and start again on the same ports; with ``lose_data`` every topic, offset and group is gone."""
        self.kill()
        if lose_data:
            shutil.rmtree(self.data, ignore_errors=True)
            self._cluster_id = uuid.uuid4().hex[:22]
        return self.start()

    def freeze(self) -> None:
        """Hang the broker (SIGSTOP): connections stay open and nothing answers."""
        if self._process is not None and self.running:
            os.killpg(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None and self.running:
            os.killpg(self._process.pid, signal.SIGCONT)


def secured(run: run_mod.Run, server_pem: pathlib.Path, users: dict[str, str]) -> tuple[KafkaBroker, str]:
    """A broker with a SASL_SSL listener (SCRAM-SHA-512 users, a PEM keystore from the harness's CA), as
    production clusters run; returns it (not started) and the SASL_SSL bootstrap address."""
    port = ports.free_port()
    broker = KafkaBroker(
        run,
        listeners={"SASL_SSL": (port, "SASL_SSL")},
        scram_users=users,
        extra_properties={
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(server_pem),
        },
    )
    return broker, f"127.0.0.1:{port}"


def _read_from(path: pathlib.Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":  # python -m tests.harness.kafka_broker DIR: a broker to try things against
    import sys

    broker = KafkaBroker(directory=pathlib.Path(sys.argv[1]))
    print(f"Kafka {broker.version} on {broker.bootstrap} after {broker.start():.1f} s; Ctrl-C stops it", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        broker.stop()
