"""/v1/hosts (admin): list, get, cordon, uncordon, drain, disk usage (getDiskUsage)."""

from __future__ import annotations

import typing

from controlplane.api import endpoint
from controlplane.api.schemas import hosts as schemas
from controlplane.services import hosts, workspace_disk

routes = endpoint.Routes("hosts")


def _enforcement(report: dict[str, typing.Any] | None) -> str | None:
    limits = (report or {}).get("disk_limits")
    return limits.get("reason") if isinstance(limits, dict) else None


def render(view: hosts.HostView) -> schemas.Host:
    h, a = view.host, view.allocated
    return schemas.Host(
        id=h.id,
        name=h.name,
        status=h.status,
        cordoned=h.cordoned,
        draining=h.draining,
        labels=h.labels,
        agent_version=h.agent_version,
        capacity=schemas.Capacity(cpus=float(h.capacity_cpus), memory_mb=h.capacity_memory_mb, disk_bytes=h.capacity_disk_bytes),
        allocated=schemas.Allocated(
            cpus=a.cpus, memory_mb=a.memory_mb, disk_bytes=a.disk_bytes, promised_disk_bytes=a.promised_disk_bytes, workspaces=a.workspaces
        ),
        disk=schemas.DiskSummary(
            total_bytes=h.disk_total_bytes,
            used_bytes=h.disk_used_bytes,
            reported_at=h.disk_reported_at,
            high_watermark=(h.disk_report or {}).get("high_watermark"),
            enforced=workspace_disk.enforced_of(h.disk_report),
            enforcement=_enforcement(h.disk_report),
        ),
        last_heartbeat_at=h.last_heartbeat_at,
        down_since=h.down_since,
        created_at=h.created_at,
        updated_at=h.updated_at,
    )


@routes.get("/v1/hosts", query=schemas.HostQuery, response=schemas.HostPage, auth="admin")
async def list_hosts(call: endpoint.Call) -> schemas.HostPage:
    """List hosts with capacity, allocation, disk and liveness."""
    q: schemas.HostQuery = call.query
    views, cursor = await hosts.list_hosts(call.session, limit=call.page_size(), cursor=q.cursor, status=q.status, cordoned=q.cordoned)
    return schemas.HostPage(items=[render(v) for v in views], next_cursor=cursor)


@routes.get("/v1/hosts/{host_id}", response=schemas.Host, auth="admin")
async def get_host(call: endpoint.Call) -> schemas.Host:
    """Get one host."""
    return render(await hosts.get_host(call.session, call.params["host_id"]))


@routes.get("/v1/hosts/{host_id}/disk", response=schemas.DiskUsage, auth="admin")
async def get_disk_usage(call: endpoint.Call) -> schemas.DiskUsage:
    """getDiskUsage: the host's latest disk report, plus the disk placement has allocated and promised there."""
    view = await hosts.get_host(call.session, call.params["host_id"])
    h, report = view.host, view.host.disk_report or {}
    return schemas.DiskUsage(
        host_id=h.id,
        host_name=h.name,
        reported_at=h.disk_reported_at,
        total_bytes=h.disk_total_bytes,
        used_bytes=h.disk_used_bytes,
        allocated_bytes=view.allocated.disk_bytes,
        promised_bytes=view.allocated.promised_disk_bytes,
        paths=[schemas.PathUsage.model_validate(p) for p in report.get("paths", [])],
        docker={k: int(v) for k, v in report.get("docker", {}).items()},
        workspaces={k: int(v) for k, v in report.get("workspaces", {}).items()},
        enforced=workspace_disk.enforced_of(report),
        enforcement=_enforcement(report),
    )


@routes.post("/v1/hosts/{host_id}/cordon", response=schemas.Host, auth="admin")
async def cordon_host(call: endpoint.Call) -> schemas.Host:
    """Cordon: the host takes no new workspaces; those on it keep running."""
    return render(await hosts.cordon(call.session, call.params["host_id"]))


@routes.post("/v1/hosts/{host_id}/uncordon", response=schemas.Host, auth="admin")
async def uncordon_host(call: endpoint.Call) -> schemas.Host:
    """Uncordon (ends a drain too); workspaces waiting for room are placed at once."""
    return render(await hosts.uncordon(call.session, call.params["host_id"], call.settings))


@routes.post("/v1/hosts/{host_id}/drain", response=schemas.Drained, auth="admin")
async def drain_host(call: endpoint.Call) -> schemas.Drained:
    """Drain: cordon, and report which workspaces still live on the host."""
    drained = await hosts.drain(call.session, call.params["host_id"])
    return schemas.Drained(host=render(drained.view), remaining=[schemas.LiveWorkspace.model_validate(w) for w in drained.remaining])
