"""A whole A4C system for a benchmark, from the test harness's parts: broker, database, control plane, agents.

The same components the end-to-end tests run (tests/e2e/system.py): an Apache
Kafka 4.1 broker (the harness's KRaft node from Maven Central's jars), a fresh
migrated database on the machine's PostgreSQL (or on the harness's embedded
server when nothing answers on 127.0.0.1:5432: bench/postgres.py),
``a4c-controlplane run`` and ``a4c-agent run`` as real processes
with generated configs, and — when asked — a private ``dockerd`` (or the one
``DOCKER_HOST`` names) with the offline busybox base image. Everything
listens on 127.0.0.1 and everything started here is stopped, removed or
dropped on exit, also after an error; every process is written in the run's
ledger so a killed benchmark's leftovers are reaped by the next run.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import sys
import typing

import docker

from bench import postgres
from controlplane.db import migrate
from tests.e2e import system
from tests.harness import base_image, dockerd, kafka_broker, postgres_server, wait
from tests.harness import run as run_mod

Config = dict[str, typing.Any]

# The control plane as the e2e tests run it, minus the fast reconciler: the
# benchmarks measure the event path, not how soon a reconcile pass comes.
PLANE_BASE: Config = {
    "rate_limit": {"enabled": False},  # a 5 ms poll is 200 requests/s from one token
    "logging": {"format": "text", "level": "WARNING"},
}


class Stack:
    """``with Stack(docker=True) as s:`` — ``s.plane``, ``s.admin``, ``s.database_url``, ``s.add_agent(...)``."""

    # Declared here: in __init__ the parameter ``docker`` hides the module.
    client: docker.DockerClient | None

    def __init__(self, *, docker: bool, plane: Config | None = None, admin_url: str | None = None) -> None:
        self.run = run_mod.Run()
        self.prefix = f"bench{secrets.token_hex(3)}"
        self._want_docker = docker
        self._plane_overrides = plane or {}
        self._admin_url = admin_url or ""
        self._asked_admin_url = admin_url
        self._postgres = contextlib.ExitStack()
        self.daemon: dockerd.DockerDaemon | None = None
        self.broker: kafka_broker.KafkaBroker | None = None
        self.docker_host = ""
        self.client = None
        self.image = ""
        self.database_url = ""
        self.plane: system.ControlPlane | None = None
        self.admin: system.Api | None = None
        self.token = ""
        self.agents: list[system.Agent] = []
        self._enrolment_token = ""

    @property
    def workdir(self) -> pathlib.Path:
        return self.run.subdir("bench")

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        self._admin_url = self._postgres.enter_context(postgres.server(self._asked_admin_url, run=self.run))
        self.broker = kafka_broker.KafkaBroker(self.run)
        self.broker.start()
        print(f"Apache Kafka {self.broker.version} on {self.broker.bootstrap}", file=sys.stderr)
        if self._want_docker:
            external = os.environ.get("DOCKER_HOST")
            if external and dockerd.answers(external):
                self.docker_host = external
            else:
                self.daemon = dockerd.DockerDaemon(self.run)
                self.daemon.start()
                self.docker_host = self.daemon.host
            self.client = docker.DockerClient(base_url=self.docker_host, version="auto", timeout=120)
            self.image = base_image.build(self.client)
        self.database_url = postgres_server.create_database(self._admin_url, f"a4c_bench_{self.run.id}")
        postgres_server.in_thread(migrate.upgrade, self.database_url)
        config = system._merge(
            PLANE_BASE,
            {
                "database": {"url": self.database_url},
                "kafka": {"bootstrap_servers": [self.broker.bootstrap], "topic_prefix": self.prefix, "session_timeout": 2.0},
            },
        )
        self.plane = system.ControlPlane(self.workdir, "cp", system._merge(config, self._plane_overrides))
        self.plane.start()
        assert self.plane.process is not None
        self.run.track("a4c-controlplane", self.plane.process)
        self.token = system.create_admin(self.workdir / "cp.yaml", self.workdir)
        self.admin = system.Api(self.plane.url, self.token)

    def add_agent(self, name: str, overrides: Config | None = None) -> tuple[system.Agent, str]:
        """An ``a4c-agent run`` enrolled through the API (the real path); returns it and its host id, once active."""
        assert self.plane is not None and self.admin is not None and self.broker is not None
        if not self._enrolment_token:
            self._enrolment_token = system.run_sync(self.admin.post("/v1/enrolment-tokens", {"description": "bench"}))["token"]
        config = system._merge(
            {
                "agent": {
                    "control_plane_url": self.plane.url,
                    "enrolment_token": self._enrolment_token,
                    "state_dir": str(self.workdir / name),
                    "host_name": f"{self.prefix}-{name}",
                },
                "kafka": {"bootstrap_servers": [self.broker.bootstrap], "topic_prefix": self.prefix, "session_timeout": 2.0},
                "docker": {"base_url": self.docker_host, "publish_address": "127.0.0.1", "pull_missing_images": False, "stop_timeout": 1.0},
                "reporting": {"disk_paths": [str(self.workdir)]},
                "cleanup": {"enabled": False},
                "daemon": {"metrics_port": 0, "shutdown_deadline": 5.0},
                "logging": {"format": "text", "level": "WARNING"},
            },
            overrides or {},
        )
        agent = system.Agent(self.workdir, name, config).start()
        assert agent.process is not None
        self.run.track(f"a4c-agent {name}", agent.process)
        self.agents.append(agent)
        host_id = agent.wait_enrolled(timeout=60)
        admin = self.admin

        async def active() -> bool:
            host = await admin.get(f"/v1/hosts/{host_id}")
            return host["status"] == "active" and bool(host["last_heartbeat_at"])

        system.run_sync(wait.eventually(active, timeout=60, message=f"host {name} active"))
        return agent, host_id

    def pids(self) -> list[int]:
        """The stack's own processes (control plane, agents, Kafka, a private dockerd): what :func:`bench.machine.quiet` watches."""
        found = [p.process.pid for p in (self.plane, *self.agents) if p is not None and p.process is not None]
        found += [pid for pid in (self.broker.pid if self.broker else None, self.daemon.pid if self.daemon else None) if pid is not None]
        return found

    def __exit__(self, *exc: typing.Any) -> None:
        for agent in self.agents:
            agent.stop()
        if self.plane is not None:
            self.plane.stop()
        if self.client is not None:
            for row in self.client.api.containers(all=True, filters={"label": f"{run_mod.TEST_LABEL}={self.run.id}"}):
                self.client.api.remove_container(row["Id"], force=True)
            for row in self.client.api.containers(all=True, filters={"label": "a4c.workspace"}):
                if (row.get("Labels") or {}).get("a4c.host") in {a.host_id for a in self.agents}:
                    self.client.api.remove_container(row["Id"], force=True)
            self.client.close()
        if self.database_url:
            postgres_server.drop_database(self._admin_url, self.database_url.rsplit("/", 1)[1])
        self._postgres.close()
        if self.broker is not None:
            self.broker.stop()
        if self.daemon is not None:
            self.daemon.stop()
        self.run.close()
