"""What both agent benchmarks stand on: a Docker daemon, a broker, the base image, agent processes.

Reuses the test harness's components (a private ``dockerd`` unless
``DOCKER_HOST`` answers, Apache Kafka 4.1 — the harness's KRaft node from
Maven Central's jars —, the offline busybox image) and the agent driver of tests/agent, so a benchmark runs the agent
exactly as the acceptance tests do: a real ``a4c-agent`` process.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import sys
import tempfile
import typing

import docker

from shared import signing
from tests.agent import driver
from tests.harness import base_image, dockerd, kafka_broker, ports
from tests.harness import run as run_mod


class BenchEnv:
    def __init__(self) -> None:
        self.run = run_mod.Run()
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="a4c-bench-"))
        self.daemon: dockerd.DockerDaemon | None = None
        self.broker: kafka_broker.KafkaBroker | None = None
        self.agents: list[driver.AgentProcess] = []
        self.docker_host = ""
        self.client: docker.DockerClient | None = None
        self.image = ""
        self.prefix = f"bench{secrets.token_hex(3)}"

    def __enter__(self) -> BenchEnv:
        external = os.environ.get("DOCKER_HOST")
        if external and dockerd.answers(external):
            self.docker_host = external
        else:
            self.daemon = dockerd.DockerDaemon(self.run)
            self.daemon.start()
            self.docker_host = self.daemon.host
        self.broker = kafka_broker.KafkaBroker(self.run)
        self.broker.start()
        print(f"Apache Kafka {self.broker.version} on {self.broker.bootstrap}", file=sys.stderr)
        self.client = docker.DockerClient(base_url=self.docker_host, version="auto", timeout=120)
        self.image = base_image.build(self.client)
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        for agent in self.agents:
            agent.stop()
        if self.client is not None:
            for row in self.client.api.containers(all=True, filters={"label": f"a4c.test-run={self.run.id}"}):
                self.client.api.remove_container(row["Id"], force=True)
            self.client.close()
        if self.broker is not None:
            self.broker.stop()
        if self.daemon is not None:
            self.daemon.stop()
        self.run.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap

    def agent(self, name: str, overrides: dict[str, dict[str, typing.Any]] | None = None) -> driver.AgentProcess:
        """A started agent process with its own identity; ``.host_id`` and ``.key`` are set."""
        host_id = f"{name}-{secrets.token_hex(3)}"
        key = signing.new_key()
        workdir = self.tmp / host_id
        workdir.mkdir(parents=True)
        driver.write_identity(workdir / "state", host_id, key)
        config = driver.config_for(
            state_dir=workdir / "state",
            bootstrap=self.bootstrap,
            topic_prefix=self.prefix,
            docker_host=self.docker_host,
            disk_paths=[str(workdir)],
            metrics_port=ports.free_port(),
            overrides=overrides,
        )
        proc = driver.AgentProcess(workdir, config)
        proc.host_id, proc.key = host_id, key
        proc.start()
        assert proc.process is not None
        self.run.track(f"a4c-agent {host_id}", proc.process)
        proc.wait_started(timeout=60)
        self.agents.append(proc)
        return proc


# The agent's production defaults for everything periodic, so "idle" means idle as deployed.
PRODUCTION_INTERVALS: dict[str, dict[str, typing.Any]] = {
    "reporting": {"heartbeat_interval": 10, "inventory_interval": 30, "disk_interval": 30},
    "kafka": {"request_timeout": 30, "retry_backoff_max": 30, "session_timeout": 10},
    "daemon": {"docker_check_interval": 5, "shutdown_deadline": 20},
    "logging": {"format": "json", "level": "INFO"},
}


def merged(*parts: dict[str, dict[str, typing.Any]]) -> dict[str, dict[str, typing.Any]]:
    out: dict[str, dict[str, typing.Any]] = {}
    for part in parts:
        for section, values in part.items():
            out.setdefault(section, {}).update(values)
    return out
