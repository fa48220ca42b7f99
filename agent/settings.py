"""Typed settings of the node agent, one documented group per concern.

``packaging/config/agent.yaml`` documents every key.
"""

from __future__ import annotations

import os
import typing

import pydantic

from agent.domain import disk_limits, ports
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
    enrolment_token_file: str | None = pydantic.Field(
        default=None, description="File holding the enrolment token (e.g. a systemd LoadCredential= path); wins over enrolment_token."
    )
    allow_insecure_enrolment: bool = pydantic.Field(
        default=False,
        description="Enrol over plain http:// with a control plane that is not on this machine. Off: the answer carries the "
        "host's signing key, so enrolment needs https:// unless the control plane is on loopback.",
    )
    host_name: str | None = pydantic.Field(default=None, description="Name to enrol under; defaults to the machine's host name.")
    state_dir: str = pydantic.Field(default="/var/lib/a4c-agent", description="Holds the host id and key (mode 0600).")
    labels: dict[str, str] = pydantic.Field(default_factory=dict, description="Free-form labels reported to the control plane.")
    replay_window: Seconds = pydantic.Field(default=3600.0, description="Commands older than this are rejected as replays.")
    max_clock_skew: Seconds = pydantic.Field(
        default=300.0, description="Commands issued further than this in the future are rejected (clock skew allowance)."
    )
    seen_commands_max: int = pydantic.Field(
        default=100_000, gt=0, description="Executed command ids remembered for replay protection (within the replay window)."
    )


class DockerSettings(config.StrictModel):
    """The local Docker daemon."""

    base_url: str | None = pydantic.Field(default=None, description="Docker API address; unset uses DOCKER_HOST or the default socket.")
    publish_address: str = pydantic.Field(default="0.0.0.0", description="Host address workspace ports are published on.")
    port_range: str = pydantic.Field(
        default="20000-32000",
        description="Host ports workspaces are published on, LOW-HIGH. Each workspace's ports are chosen once from it and "
        "kept across stop/start, agent restarts and reboots (recorded in state_dir/workspaces.json; docs/workspaces.md).",
    )
    data_root: str = pydantic.Field(default="/var/lib/docker", description="Measured for disk reports and watermarks.")
    network: str | None = pydantic.Field(default=None, description="Network for workspace containers; unset = Docker's default bridge.")
    restart_policy: typing.Literal["no", "on-failure", "unless-stopped", "always"] = pydantic.Field(
        default="unless-stopped", description="Docker restart policy of workspace containers."
    )
    cap_drop: list[str] = pydantic.Field(
        default_factory=lambda: ["ALL"], description="Capabilities dropped from workspace containers (they are never privileged)."
    )
    cap_add: list[str] = pydantic.Field(
        default_factory=lambda: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"],
        description="Capabilities added back after cap_drop: what a developer shell needs, nothing that reaches the host.",
    )
    stop_timeout: Seconds = pydantic.Field(default=10.0, description="Grace between SIGTERM and SIGKILL when stopping a workspace.")
    init: bool = pydantic.Field(
        default=True, description="Run Docker's init (tini) as PID 1 of workspaces, so SIGTERM stops them at once (docs/workspaces.md)."
    )
    settle_period: Seconds = pydantic.Field(
        default=2.0, description="A started workspace is reported running only if it is still up, not restarted, this long after its start."
    )
    crash_loop_exits: int = pydantic.Field(
        default=3, gt=0, description="This many exits of a workspace container within crash_loop_window: stop it and report it failed."
    )
    crash_loop_window: Seconds = pydantic.Field(default=300.0, description="The window crash_loop_exits are counted in.")
    enforce_disk_limit: disk_limits.Setting = pydantic.Field(
        default="auto",
        description="Cap each workspace's disk at its disk_gb (a storage-opt size): auto = where the storage driver can "
        "(overlay2 on xfs with prjquota, btrfs, zfs); true = refuse to start where it cannot; false = never (docs/operations/disk.md).",
    )
    pull_missing_images: bool = pydantic.Field(
        default=True,
        description="Pull a workspace image that is not on the host; false = fail the create instead. "
        "Never an a4c/ image: those are built on each host, so no registry has them.",
    )
    api_timeout: Seconds = pydantic.Field(default=60.0, description="Deadline for one Docker API call (builds and event streams excepted).")

    @pydantic.field_validator("enforce_disk_limit", mode="before")
    @classmethod
    def _enforce_disk_limit(cls, value: typing.Any) -> typing.Any:
        # The setting was a boolean before it had auto: true/false still mean what they meant.
        if isinstance(value, bool):
            return "true" if value else "false"
        return value.lower() if isinstance(value, str) else value

    @pydantic.field_validator("port_range")
    @classmethod
    def _port_range(cls, value: str) -> str:
        ports.parse_range(value)
        return value


class ReportingSettings(config.StrictModel):
    """What the agent reports, and how often."""

    heartbeat_interval: Seconds = pydantic.Field(default=10.0, description="How often a heartbeat (health, capacity, conditions) is sent.")
    inventory_interval: Seconds = pydantic.Field(default=30.0, description="Full inventory: the reconcile period.")
    disk_interval: Seconds = pydantic.Field(
        default=30.0, description="How often disk use is measured and reported; crossing the high watermark triggers cleanup."
    )
    disk_paths: list[str] = pydantic.Field(default_factory=list, description="Paths to measure; empty = docker.data_root.")


class CleanupSettings(config.StrictModel):
    """The cleanup daemon: scheduled and under disk pressure."""

    enabled: bool = pydantic.Field(default=True, description="Run scheduled and disk-pressure cleanups (a cleanup command always runs).")
    interval: Seconds = pydantic.Field(default=3600.0, description="Period of the scheduled cleanup.")
    high_watermark: float = pydantic.Field(default=85.0, gt=0, le=100, description="Disk percent that triggers cleanup.")
    low_watermark: float = pydantic.Field(default=70.0, gt=0, le=100, description="Cleanup stops below this percent.")
    exited_grace: Seconds = pydantic.Field(default=3600.0, description="Exited a4c containers younger than this are kept.")
    dry_run: bool = pydantic.Field(default=False, description="Only report what would be removed.")
    pressure_cooldown: Seconds = pydantic.Field(default=300.0, description="After a disk-pressure cleanup, the next one waits at least this long.")

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> CleanupSettings:
        if self.low_watermark >= self.high_watermark:
            raise ValueError("low_watermark must be below high_watermark")
        return self


class BuildSettings(config.StrictModel):
    """Image builds."""

    concurrency: int = pydantic.Field(default=2, gt=0, description="Builds running at once; more wait their turn.")
    deadline: Seconds = pydantic.Field(default=1800.0, description="Longest a build may run.")
    work_dir: str | None = pydantic.Field(default=None, description="Where git contexts are cloned; default under state_dir.")
    log_batch_interval: Seconds = pydantic.Field(default=0.5, description="Build output is sent as job.log batches at most this often.")
    log_batch_lines: int = pydantic.Field(default=200, gt=0, description="A job.log batch holds at most this many lines.")


class DaemonSettings(config.StrictModel):
    """Process behaviour."""

    shutdown_deadline: Seconds = pydantic.Field(default=20.0, description="SIGTERM: in-flight work gets this long.")
    metrics_host: str = pydantic.Field(default="127.0.0.1", description="Address of /metrics and /healthz; keep it on loopback.")
    metrics_port: common.Port = pydantic.Field(default=9469, description="/metrics and /healthz; 0 picks a free port.")
    task_restart_backoff_max: Seconds = pydantic.Field(
        default=30.0, description="Longest wait before a crashed internal task (root task) is restarted."
    )
    docker_check_interval: Seconds = pydantic.Field(
        default=5.0, description="How often Docker is pinged; while it does not answer, no new command is taken."
    )


class CommandSettings(config.StrictModel):
    """Taking commands from Kafka."""

    fetch_max_wait: Seconds = pydantic.Field(
        default=0.5,
        description=(
            "Longest a fetch waits at the broker. Real Kafka answers as soon as a command arrives; a broker that "
            "does not wake long polls (the embedded one) adds up to this much latency, and a shorter wait costs idle CPU."
        ),
    )
    max_in_flight: int = pydantic.Field(default=32, gt=0, description="Commands handled at once; fetching pauses beyond this.")


class AccessSettings(config.StrictModel):
    """Exec and logs streams the control plane opens for a workspace's owner (agent/access.py, agent/access_streams.py, docs/workspaces.md)."""

    enabled: bool = pydantic.Field(default=True, description="Serve exec and logs streams to the control plane.")
    listen_host: str = pydantic.Field(
        default="127.0.0.1",
        description="Address of the listener. Loopback suits a control plane on this machine; otherwise an address the control "
        "plane reaches (a private network: grants are signed, the streams are not encrypted).",
    )
    listen_port: common.Port = pydantic.Field(default=0, description="Port of the listener; 0 picks a free one (it is advertised).")
    advertise_url: str | None = pydantic.Field(
        default=None, description="URL the control plane connects to, e.g. http://10.0.0.5:9470; unset = http://<listen_host>:<port>."
    )
    grant_max_age: Seconds = pydantic.Field(
        default=30.0, description="A grant from the control plane is accepted this long after it was issued, once."
    )
    max_seconds: Seconds = pydantic.Field(default=3600.0, description="Longest an exec session or a followed log stream lasts.")
    max_output_bytes: int = pydantic.Field(default=64 * 1024 * 1024, gt=0, description="Most output one exec or logs stream sends.")


class Settings(config.StrictModel):
    """All agent settings."""

    agent: AgentSettings = AgentSettings()
    kafka: common.KafkaSettings = common.KafkaSettings()
    docker: DockerSettings = DockerSettings()
    reporting: ReportingSettings = ReportingSettings()
    cleanup: CleanupSettings = CleanupSettings()
    builds: BuildSettings = BuildSettings()
    daemon: DaemonSettings = DaemonSettings()
    commands: CommandSettings = CommandSettings()
    access: AccessSettings = AccessSettings()
    logging: common.LoggingSettings = common.LoggingSettings()


def load(path: str | os.PathLike[str] | None = None, *, environ: typing.Mapping[str, str] | None = None, **overrides: typing.Any) -> Settings:
    env = os.environ if environ is None else environ
    return config.load(Settings, path or env.get("A4C_CONFIG") or None, environ=env, overrides=overrides)
