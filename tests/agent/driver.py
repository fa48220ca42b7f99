"""Driving a real agent process the way the control plane does: signed Kafka commands in, events out.

Not a harness of its own: the broker, the Docker daemon and the base image
come from tests/harness; this module only knows the agent's side — its
config file, its identity file, its process, and the two topics it talks on.

* :class:`AgentProcess` runs ``.venv/bin/a4c-agent run --config FILE`` (a
  real subprocess: SIGTERM, SIGHUP and kill -9 mean what they say);
* :class:`Commands` signs and publishes commands to the agent's topic;
* :class:`Events` collects the agent's events (signature checked with the
  host key) and waits for the ones a test expects.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import typing
import uuid

import aiokafka
import aiokafka.errors
import yaml
from aiokafka import admin as aiokafka_admin

from shared import messages, signing
from shared import topics as topics_mod
from tests.harness import ports, wait

AGENT_BIN = pathlib.Path(sys.executable).with_name("a4c-agent")


def write_identity(state_dir: pathlib.Path, host_id: str, key: str) -> None:
    """identity.json as enrolment would leave it (see agent/identity.py), mode 0600."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / "identity.json"
    path.write_text(json.dumps({"host_id": host_id, "key": key, "host_name": f"test-{host_id}", "enrolled_at": ""}))
    path.chmod(0o600)


def config_for(
    *,
    state_dir: pathlib.Path,
    bootstrap: str,
    topic_prefix: str,
    docker_host: str,
    disk_paths: list[str],
    metrics_port: int,
    overrides: dict[str, dict[str, typing.Any]] | None = None,
) -> dict[str, typing.Any]:
    """A test config: short intervals, loopback everything."""
    config: dict[str, dict[str, typing.Any]] = {
        "agent": {"state_dir": str(state_dir)},
        "kafka": {
            "bootstrap_servers": [bootstrap],
            "topic_prefix": topic_prefix,
            "request_timeout": 5,
            "retry_backoff_max": 1,
            "session_timeout": 1,
        },
        "docker": {"base_url": docker_host, "publish_address": "127.0.0.1", "stop_timeout": 1, "settle_period": 0.5},
        "reporting": {"heartbeat_interval": 1, "inventory_interval": 2, "disk_interval": 1, "disk_paths": disk_paths},
        "cleanup": {"interval": 3600},
        "commands": {"fetch_max_wait": 0.05},
        "daemon": {"metrics_port": metrics_port, "shutdown_deadline": 5, "docker_check_interval": 1},
        "logging": {"format": "json", "level": "INFO"},
    }
    for section, values in (overrides or {}).items():
        config.setdefault(section, {}).update(values)
    return config


class AgentExited(AssertionError):
    """The agent process ended when a test needed it running."""


class AgentProcess:
    """One ``a4c-agent run`` subprocess with its own state dir, config and log."""

    # The identity it runs under, set by whoever enrolled it (tests/agent/conftest.py, bench/agent/env.py).
    host_id: str
    key: str

    def __init__(self, workdir: pathlib.Path, config: dict[str, typing.Any], *, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.config = config
        self.config_path = workdir / "agent.yaml"
        self.log_path = workdir / "agent.log"
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_offset = 0
        self.write_config()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.config['daemon']['metrics_port']}"

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("A4C_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env.update(self.env)
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(AGENT_BIN), "run", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def wait_started(self, timeout: float = 15.0) -> None:
        """Until the agent logged that its root tasks run; fails at once (with its log) if it exits."""
        deadline = time.monotonic() + timeout
        while not self.logged("agent started", since_start=True):
            if self.process is not None and self.process.poll() is not None:
                raise AgentExited(f"the agent exited with status {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the agent did not start within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill9(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.terminate(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill9()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_lines(self, *, since_start: bool = False) -> list[dict[str, typing.Any]]:
        """The agent's JSON log records (of its latest start only, if asked)."""
        out = []
        with open(self.log_path, "rb") as fh:
            if since_start:
                fh.seek(self.log_offset)
            text = fh.read().decode(errors="replace")
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line, "unparsed": True})
        return out

    def logged(self, msg: str, *, since_start: bool = False, **fields: typing.Any) -> list[dict[str, typing.Any]]:
        """ECS lines (shared/logs.py) with this message whose ``a4c`` fields include ``fields``."""
        return [
            r
            for r in self.log_lines(since_start=since_start)
            if r.get("message") == msg and all(r.get("a4c", {}).get(k) == v for k, v in fields.items())
        ]

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class Commands:
    """Signs and publishes commands the way the control plane's outbox relay does."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.topics = topics_mod.Topics(prefix)
        self._producer: aiokafka.AIOKafkaProducer | None = None
        self._seq = 0

    async def start(self) -> None:
        self._producer = aiokafka.AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0, acks="all")
        await self._producer.start()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    def envelope(
        self,
        kind: messages.CommandKind,
        payload: messages._Model | dict,
        *,
        host_id: str,
        key: str | None,
        id: str | None = None,
        issued_at: float | None = None,
    ) -> bytes:
        self._seq += 1
        body = {
            "id": id or uuid.uuid4().hex,
            "kind": kind.value,
            "host_id": host_id,
            "seq": self._seq,
            "issued_at": time.time() if issued_at is None else issued_at,
            "payload": payload if isinstance(payload, dict) else payload.model_dump(mode="json"),
        }
        return signing.sign(body, key) if key is not None else signing.canonical(body)

    async def send_raw(self, host_id: str, raw: bytes) -> float:
        """Publish bytes to ``host_id``'s command topic; returns the publish time."""
        assert self._producer is not None
        sent = time.time()
        await self._producer.send_and_wait(self.topics.commands(host_id), raw, key=host_id.encode())
        return sent

    async def send(self, kind: messages.CommandKind, payload: messages._Model | dict, *, host_id: str, key: str, **kw: typing.Any) -> str:
        raw = self.envelope(kind, payload, host_id=host_id, key=key, **kw)
        await self.send_raw(host_id, raw)
        return json.loads(raw)["id"]


class Event(typing.NamedTuple):
    kind: str
    host_id: str
    seq: int
    issued_at: float
    payload: dict[str, typing.Any]
    received_at: float


class Events:
    """Everything on the events topic, verified with the host keys it knows."""

    def __init__(self, bootstrap: str, prefix: str, keys: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.topic = topics_mod.Topics(prefix).events
        self.keys = keys
        self.events: list[Event] = []
        self.forged: list[bytes] = []
        self._consumer: aiokafka.AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        # Right after a broker (re)start its first answers may still be "not ready".
        await wait.eventually(self._ensure_topic, timeout=20, message=f"topic {self.topic} exists")
        self._consumer = aiokafka.AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=50
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def _ensure_topic(self) -> bool:
        admin = aiokafka_admin.AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            await admin.start()
            if self.topic not in await admin.list_topics():
                try:
                    await admin.create_topics([aiokafka_admin.NewTopic(self.topic, 1, 1)])
                except aiokafka.errors.TopicAlreadyExistsError:
                    pass
            return True
        finally:
            await admin.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            try:
                await self._consumer.stop()
            except (aiokafka.errors.KafkaError, asyncio.CancelledError):
                pass  # a consumer of a broker that went away; it is discarded anyway

    async def reopen(self) -> None:
        """Read the topic afresh (after a broker restart lost it; what was collected is kept)."""
        await self.close()
        await self.start()

    async def _collect(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            try:
                body = signing.peek(record.value)
                key = self.keys.get(body.get("host_id", ""))
                verified = signing.verify(record.value, key) if key else None
            except signing.SignatureError:
                verified = None
            if verified is None:
                self.forged.append(record.value)
                continue
            self.events.append(Event(verified["kind"], verified["host_id"], verified["seq"], verified["issued_at"], verified["payload"], time.time()))

    def of(self, kind: str, host_id: str | None = None, **match: typing.Any) -> list[Event]:
        return [
            e
            for e in list(self.events)
            if e.kind == kind and (host_id is None or e.host_id == host_id) and all(e.payload.get(k) == v for k, v in match.items())
        ]

    async def wait_for(
        self,
        kind: str,
        *,
        host_id: str | None = None,
        timeout: float = 20.0,
        where: typing.Callable[[Event], bool] | None = None,
        **match: typing.Any,
    ) -> Event:
        def check() -> Event | None:
            found = [e for e in self.of(kind, host_id, **match) if where is None or where(e)]
            return found[0] if found else None

        return await wait.eventually(check, timeout=timeout, message=f"a {kind} event matching {match or ''}")

    async def result(self, job_id: str, *, timeout: float = 30.0) -> dict[str, typing.Any]:
        return (await self.wait_for("job.result", job_id=job_id, timeout=timeout)).payload


def free_metrics_port() -> int:
    return ports.free_port()
