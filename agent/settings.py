"""Typed settings of the node agent, one documented group per concern.

``packaging/config/agent.yaml`` documents every key.
"""

from __future__ import annotations

import os
import typing

import pydantic

from shared import config
from shared import settings as common

Seconds = common.Seconds


class AgentSettings(config.StrictModel):
    """Identity and enrolment."""

    control_plane_url: common.HttpUrl = pydantic.Field(
        default="http://127.0.0.1:8080", description="Used only to enrol; all other traffic goes through Kafka."
    )
    enrolment_token: str | None = pydantic.Field(
        default=None, description="One-time enrolment token issued by an admin (a4c admin enrolment-tokens create)."
    )
    host_name: str | None = pydantic.Field(default=None, description="Name to enrol under; defaults to the machine's host name.")
    state_dir: str = pydantic.Field(default="/var/lib/a4c-agent", description="Holds the host id and key (mode 0600).")
    labels: dict[str, str] = pydantic.Field(default_factory=dict, description="Free-form labels reported to the control plane.")
    replay_window: Seconds = pydantic.Field(default=3600.0, description="Commands older than this are rejected as replays.")


class DockerSettings(config.StrictModel):
    """The local Docker daemon."""

    base_url: str | None = pydantic.Field(default=None, description="Docker API address; unset uses DOCKER_HOST or the default socket.")
    publish_address: str = pydantic.Field(default="0.0.0.0", description="Host address workspace ports are published on.")
    data_root: str = pydantic.Field(default="/var/lib/docker", description="Measured for disk reports and watermarks.")
    network: str | None = pydantic.Field(default=None, description="Network for workspace containers; unset = Docker's default bridge.")


class ReportingSettings(config.StrictModel):
    """What the agent reports, and how often."""

    heartbeat_interval: Seconds = pydantic.Field(default=10.0)
    inventory_interval: Seconds = pydantic.Field(default=30.0, description="Full inventory: the reconcile period.")
    disk_interval: Seconds = pydantic.Field(default=30.0)
    disk_paths: list[str] = pydantic.Field(default_factory=list, description="Paths to measure; empty = docker.data_root.")


class CleanupSettings(config.StrictModel):
    """The cleanup daemon: scheduled and under disk pressure."""

    enabled: bool = True
    interval: Seconds = pydantic.Field(default=3600.0)
    high_watermark: float = pydantic.Field(default=85.0, gt=0, le=100, description="Disk percent that triggers cleanup.")
    low_watermark: float = pydantic.Field(default=70.0, gt=0, le=100, description="Cleanup stops below this percent.")
    exited_grace: Seconds = pydantic.Field(default=3600.0, description="Exited a4c containers younger than this are kept.")
    dry_run: bool = pydantic.Field(default=False, description="Only report what would be removed.")

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> "CleanupSettings":
        if self.low_watermark >= self.high_watermark:
            raise ValueError("low_watermark must be below high_watermark")
        return self


class BuildSettings(config.StrictModel):
    """Image builds."""

    concurrency: int = pydantic.Field(default=2, gt=0)
    deadline: Seconds = pydantic.Field(default=1800.0, description="Longest a build may run.")
    work_dir: str | None = pydantic.Field(default=None, description="Where git contexts are cloned; default under state_dir.")


class DaemonSettings(config.StrictModel):
    """Process behaviour."""

    shutdown_deadline: Seconds = pydantic.Field(default=20.0, description="SIGTERM: in-flight work gets this long.")
    metrics_host: str = pydantic.Field(default="127.0.0.1")
    metrics_port: common.Port = pydantic.Field(default=9469, description="/metrics and /healthz; 0 picks a free port.")


class Settings(config.StrictModel):
    """All agent settings."""

    agent: AgentSettings = AgentSettings()
    kafka: common.KafkaSettings = common.KafkaSettings()
    docker: DockerSettings = DockerSettings()
    reporting: ReportingSettings = ReportingSettings()
    cleanup: CleanupSettings = CleanupSettings()
    builds: BuildSettings = BuildSettings()
    daemon: DaemonSettings = DaemonSettings()
    logging: common.LoggingSettings = common.LoggingSettings()


def load(path: str | os.PathLike[str] | None = None, *, environ: typing.Mapping[str, str] | None = None, **overrides: typing.Any) -> Settings:
    env = os.environ if environ is None else environ
    return config.load(Settings, path or env.get("A4C_CONFIG") or None, environ=env, overrides=overrides)
