"""Hosts as operators see them, their disk usage, and drain reports."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from controlplane.api.schemas import common
from controlplane.db import models

# One definition of disk used (shared/domain/disk.py), so used/total is df's Use%.
USABLE = "Usable bytes of the Docker data root's filesystem: used + free, not counting blocks reserved for root (df's definition)."


class Capacity(common.Out):
    cpus: float
    memory_mb: int
    disk_bytes: int


class Allocated(common.Out):
    cpus: float
    memory_mb: int
    disk_bytes: int = pydantic.Field(description="Sum of the disk quotas of live workspaces here.")
    promised_disk_bytes: int = pydantic.Field(description="Quota of workspaces placed here but not running yet.")
    workspaces: int


class DiskSummary(common.Out):
    total_bytes: int | None = pydantic.Field(description=USABLE)
    used_bytes: int | None
    reported_at: datetime.datetime | None
    high_watermark: float | None = pydantic.Field(
        default=None, description="The agent's cleanup high watermark (disk percent) from its latest report; null from older agents."
    )
    enforced: bool | None = pydantic.Field(
        default=None,
        description="Whether this host caps each workspace's disk at its disk_gb (its storage driver allows it); "
        "false: reservations are not enforced; null until its agent said (older agents never do).",
    )
    enforcement: str | None = pydantic.Field(default=None, description="Why it enforces or cannot, in the agent's words.")


class Host(common.Out):
    id: uuid.UUID
    name: str
    status: models.HostStatus
    cordoned: bool
    draining: bool
    labels: dict[str, typing.Any]
    agent_version: str
    capacity: Capacity
    allocated: Allocated
    disk: DiskSummary
    last_heartbeat_at: datetime.datetime | None
    down_since: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class HostPage(common.Page[Host]):
    pass


class HostQuery(common.ListQuery):
    status: models.HostStatus | None = None
    cordoned: common.QueryBool | None = None


class PathUsage(common.Out):
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float


class DiskUsage(common.Out):
    """getDiskUsage: the host's latest disk report plus what placement has promised on it."""

    host_id: uuid.UUID
    host_name: str
    reported_at: datetime.datetime | None
    total_bytes: int | None = pydantic.Field(description=USABLE)
    used_bytes: int | None
    allocated_bytes: int
    promised_bytes: int
    paths: list[PathUsage]
    docker: dict[str, int] = pydantic.Field(description="Docker's own figures: images, containers, volumes, build_cache bytes.")
    workspaces: dict[str, int] = pydantic.Field(description="Writable-layer bytes per workspace id.")
    enforced: bool | None = pydantic.Field(default=None, description="Whether workspaces' disk_gb is enforced here; null until the agent said.")
    enforcement: str | None = pydantic.Field(default=None, description="Why it enforces or cannot, in the agent's words.")


class LiveWorkspace(common.Out):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    observed_state: models.ObservedState


class Drained(common.Out):
    host: Host
    remaining: list[LiveWorkspace] = pydantic.Field(description="Workspaces still living on the host.")
