"""A workspace's disk as the API shows it: reserved, used (from its host's latest disk report), enforced, over.

Computed when read, with one query per page (the hosts of the page's workspaces), never per row;
for a workspace just created, read by the statement that inserts it (:data:`NEW`).
docs/operations/disk.md says what each figure means.
"""

from __future__ import annotations

import dataclasses
import typing
import uuid

import sqlalchemy as sa

from controlplane.db import models
from shared.domain import disk as disk_rule


@dataclasses.dataclass(frozen=True)
class HostDisk:
    """What a host's latest disk report says about its workspaces."""

    workspaces: dict[str, int]
    enforced: bool | None  # None: no report yet, or an agent older than disk_limits


@dataclasses.dataclass(frozen=True)
class WorkspaceDisk:
    reserved_bytes: int
    used_bytes: int | None
    enforced: bool | None
    over: bool | None


_HOST_DISKS = sa.text("SELECT id, disk_report -> 'workspaces', disk_report -> 'disk_limits' -> 'enforced' FROM hosts WHERE id = ANY(:ids)")


_HOSTS = models.Host.__table__
# What a new workspace's answer shows of its host's latest report, as host_disks reads it: the workspace's
# own entry and whether limits are enforced (parameters: new_params).
NEW = (
    sa.select(_HOSTS.c.disk_report["workspaces"][sa.bindparam("disk_workspace", type_=sa.Text)])
    .where(_HOSTS.c.id == sa.bindparam("disk_host"))
    .scalar_subquery(),
    sa.select(_HOSTS.c.disk_report["disk_limits"]["enforced"]).where(_HOSTS.c.id == sa.bindparam("disk_host")).scalar_subquery(),
)


def new_params(workspace_id: uuid.UUID, host_id: uuid.UUID) -> dict[str, typing.Any]:
    return {"disk_host": host_id, "disk_workspace": str(workspace_id)}


def new_host(workspace_id: uuid.UUID, host_id: uuid.UUID, used: typing.Any, enforced: typing.Any) -> dict[uuid.UUID, HostDisk]:
    """:func:`host_disks` for one new workspace, from what :data:`NEW` read."""
    return {
        host_id: HostDisk(
            workspaces={} if used is None else {str(workspace_id): int(used)}, enforced=enforced if isinstance(enforced, bool) else None
        )
    }


def enforced_of(report: typing.Mapping[str, typing.Any] | None) -> bool | None:
    limits = (report or {}).get("disk_limits")
    return bool(limits["enforced"]) if isinstance(limits, dict) and "enforced" in limits else None


async def host_disks(session: typing.Any, host_ids: typing.Iterable[uuid.UUID | None]) -> dict[uuid.UUID, HostDisk]:
    ids = list({h for h in host_ids if h is not None})
    if not ids:
        return {}
    rows = await session.execute(_HOST_DISKS, {"ids": ids})
    return {
        row[0]: HostDisk(workspaces={k: int(v) for k, v in (row[1] or {}).items()}, enforced=row[2] if isinstance(row[2], bool) else None)
        for row in rows
    }


def of(workspace_id: uuid.UUID, host_id: uuid.UUID | None, disk_gb: int, hosts: typing.Mapping[uuid.UUID, HostDisk]) -> WorkspaceDisk:
    """One workspace's disk: used is its writable layer in its host's latest report (None when the host did not report it)."""
    host = hosts.get(host_id) if host_id is not None else None
    used = host.workspaces.get(str(workspace_id)) if host is not None else None
    return WorkspaceDisk(
        reserved_bytes=disk_rule.reserved_bytes(disk_gb),
        used_bytes=used,
        enforced=host.enforced if host is not None else None,
        over=disk_rule.over(used, disk_gb),
    )
