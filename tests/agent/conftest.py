"""Fixtures for agent tests: ``kit`` starts real agent processes against the harness's Docker and broker.

``kit.agent()`` writes an identity and a config and starts ``a4c-agent``;
``kit.send(agent, kind, payload)`` publishes a signed command for it;
``kit.events`` holds everything agents published (signatures checked).
Containers an agent of this test made are removed at teardown.
"""

from __future__ import annotations

import dataclasses
import pathlib
import secrets
import typing

import docker
import pytest

from agent.domain import containers as containers_mod
from shared import messages, signing
from tests.agent import driver
from tests.harness import ports
from tests.harness import run as run_mod


@dataclasses.dataclass
class Kit:
    tmp: pathlib.Path
    bootstrap: str
    prefix: str
    docker_host: str
    docker_client: docker.DockerClient
    base_image: str
    commands: driver.Commands
    events: driver.Events
    harness_run: run_mod.Run
    agents: list[driver.AgentProcess] = dataclasses.field(default_factory=list)

    def agent(
        self,
        host_id: str | None = None,
        *,
        overrides: dict[str, dict[str, typing.Any]] | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
        state_dir: pathlib.Path | None = None,
    ) -> driver.AgentProcess:
        host_id = host_id or f"h{secrets.token_hex(3)}"
        key = signing.new_key()
        workdir = self.tmp / host_id
        workdir.mkdir(parents=True, exist_ok=True)
        state = state_dir or workdir / "state"
        driver.write_identity(state, host_id, key)
        disk_dir = workdir / "disk"
        disk_dir.mkdir(exist_ok=True)
        config = driver.config_for(
            state_dir=state,
            bootstrap=self.bootstrap,
            topic_prefix=self.prefix,
            docker_host=self.docker_host,
            disk_paths=[str(disk_dir)],
            metrics_port=ports.free_port(),
            overrides=overrides,
        )
        proc = driver.AgentProcess(workdir, config, env=env)
        proc.host_id, proc.key = host_id, key
        self.events.keys[host_id] = key
        self.agents.append(proc)
        if start:
            self.start(proc)
        return proc

    def start(self, proc: driver.AgentProcess) -> driver.AgentProcess:
        """(Re)start an agent process and wait until its root tasks run."""
        proc.start()
        assert proc.process is not None
        # Written in the run's ledger: a crashed test session's agents get reaped.
        self.harness_run.track(f"a4c-agent {proc.host_id}", proc.process)
        proc.wait_started()
        return proc

    async def send(self, agent: driver.AgentProcess, kind: messages.CommandKind, payload: messages._Model | dict, **kw: typing.Any) -> str:
        return await self.commands.send(kind, payload, host_id=agent.host_id, key=agent.key, **kw)

    def spec(self, workspace_id: str, **kw: typing.Any) -> messages.WorkspaceSpec:
        values: dict[str, typing.Any] = {
            "workspace_id": workspace_id,
            "name": workspace_id,
            "owner": "tester",
            "image": self.base_image,
            "cpus": 0.5,
            "memory_mb": 64,
            "command": ["sleep", "3600"],
        }
        values.update(kw)
        return messages.WorkspaceSpec(**values)

    def name(self, agent: driver.AgentProcess, workspace_id: str) -> str:
        """The container name the agent gives a workspace (it carries the host, see agent/domain/containers.py)."""
        return containers_mod.container_name(workspace_id, agent.host_id)

    def container(self, agent: driver.AgentProcess, workspace_id: str) -> typing.Any:
        return self.docker_client.containers.get(self.name(agent, workspace_id))

    def containers_of(self, agent: driver.AgentProcess) -> list:
        return self.docker_client.containers.list(all=True, filters={"label": f"a4c.host={agent.host_id}"})


@pytest.fixture
async def kit(
    tmp_path: pathlib.Path,
    kafka_bootstrap: str,
    topic_prefix: str,
    docker_host: str,
    docker_client: docker.DockerClient,
    base_image: str,
    harness_run: run_mod.Run,
) -> typing.AsyncIterator[Kit]:
    commands = driver.Commands(kafka_bootstrap, topic_prefix)
    events = driver.Events(kafka_bootstrap, topic_prefix, keys={})
    await commands.start()
    await events.start()
    the_kit = Kit(tmp_path, kafka_bootstrap, topic_prefix, docker_host, docker_client, base_image, commands, events, harness_run)
    try:
        yield the_kit
    finally:
        for agent in the_kit.agents:
            agent.stop()
            # Shown by pytest only when the test failed.
            print(f"--- agent {agent.host_id} log (tail) ---\n{agent.log_tail(60)}")
        await events.close()
        await commands.close()
        for agent in the_kit.agents:
            for container in the_kit.containers_of(agent):
                container.remove(force=True, v=True)
