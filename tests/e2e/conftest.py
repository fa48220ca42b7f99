"""A whole A4C system per test module: two control-plane instances and two agents, all real processes."""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import shutil
import typing

import pytest

from tests.e2e import system
from tests.harness import wait

_modules = itertools.count()
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"

FAST = {
    "reconciler": {"interval": 1.0, "host_down_after": 8.0, "job_ack_timeout": 6.0, "orphan_grace": 3.0},
    "scheduler": {"tick": 1.0},
    "relay": {"poll_interval": 0.5},
    "rate_limit": {"enabled": False},
    "logging": {"format": "text", "level": "INFO"},
}


@dataclasses.dataclass
class System:
    workdir: pathlib.Path
    prefix: str
    planes: list[system.ControlPlane]
    agents: list[system.Agent]
    admin: system.Api
    base_image: str
    workspace_image: str
    docker_client: typing.Any

    @property
    def api(self) -> system.Api:
        return self.admin

    def agent_config(self, name: str, enrolment_token: str) -> dict[str, typing.Any]:
        return {
            "agent": {
                "control_plane_url": self.planes[0].url,
                "enrolment_token": enrolment_token,
                "state_dir": str(self.workdir / name),
                "host_name": f"{self.prefix}-{name}",
            },
            # The control plane's Kafka settings, TLS and SASL included: one cluster, one way in.
            "kafka": dict(self.planes[0].config["kafka"]),
            "docker": {"publish_address": "127.0.0.1", "pull_missing_images": False},
            "reporting": {"heartbeat_interval": 1.0, "inventory_interval": 1.5, "disk_interval": 2.0, "disk_paths": [str(self.workdir)]},
            "cleanup": {"enabled": False},
            "daemon": {"metrics_port": 0, "shutdown_deadline": 5.0},
            "logging": {"format": "text", "level": "INFO"},
        }


@pytest.fixture(scope="session")
def workspace_image(docker_client, base_image, test_run_id) -> str:
    """A long-running workspace image: busybox httpd on port 8080 (so published ports can be probed)."""
    import io

    tag = f"a4c-test/ws:{test_run_id[-8:]}"
    dockerfile = f'FROM {base_image}\nRUN mkdir -p /www && echo a4c-workspace > /www/index.html\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


@pytest.fixture(scope="module")
def kafka_client_settings() -> dict[str, typing.Any]:
    """Extra ``kafka.*`` settings for every daemon of the system (a module on a SASL_SSL broker overrides it)."""
    return {}


# One database per module: a whole system (control planes, agents) is started once per module and every test drives it.
@pytest.fixture(scope="module")
def a4c_system(
    tmp_path_factory,
    module_database_url,
    kafka_bootstrap,
    kafka_client_settings,
    docker_host,
    docker_client,
    base_image,
    workspace_image,
    test_run_id,
) -> typing.Iterator[System]:
    workdir = tmp_path_factory.mktemp("e2e")
    prefix = f"e{test_run_id[-6:]}m{next(_modules)}"
    config = system._merge(
        FAST,
        {
            "database": {"url": module_database_url},
            "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": prefix, "session_timeout": 2.0, **kafka_client_settings},
        },
    )
    planes = [system.ControlPlane(workdir, f"cp{i}", config) for i in range(2)]
    agents: list[system.Agent] = []
    try:
        for plane in planes:
            plane.start()
        token = system.create_admin(workdir / "cp0.yaml", workdir)
        admin = system.Api(planes[0].url, token)
        enrol = system.run_sync(admin.post("/v1/enrolment-tokens", {"description": "e2e", "max_uses": 2}))
        sys_ = System(workdir, prefix, planes, agents, admin, base_image, workspace_image, docker_client)
        for i in range(2):
            agent = system.Agent(workdir, f"agent{i}", sys_.agent_config(f"agent{i}", enrol["token"]))
            agents.append(agent.start())
        for agent in agents:
            agent.wait_enrolled()

        async def all_active() -> bool:
            hosts = (await admin.get("/v1/hosts"))["items"]
            return len(hosts) == 2 and all(h["status"] == "active" and h["last_heartbeat_at"] and h["disk"]["reported_at"] for h in hosts)

        system.run_sync(wait.eventually(all_active, timeout=30, message="both hosts active with heartbeats and disk reports"))
        yield sys_
    finally:
        for agent in agents:
            agent.stop()
        for plane in planes:
            plane.stop()
        # Keep the daemons' logs where a person can read them after the run.
        keep = ARTIFACTS / prefix
        keep.mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy(log, keep / log.name)
