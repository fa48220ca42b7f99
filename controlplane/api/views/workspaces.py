"""/v1/workspaces: create, list, get, start, stop, delete."""

from __future__ import annotations

import dataclasses
import typing

from controlplane import errors
from controlplane.api import endpoint, keys
from controlplane.api.schemas import common
from controlplane.api.schemas import workspaces as schemas
from controlplane.api.views import jobs as jobs_view
from controlplane.db import models
from controlplane.domain import queue as domain_queue
from controlplane.services import queue, workspace_disk, workspace_read, workspaces
from shared import messages

routes = endpoint.Routes("workspaces")


# The columns a workspace shows as they are; disk and queue_position are computed when read.
_COLUMNS = tuple(f for f in schemas.Workspace.model_fields if f not in ("disk", "queue_position"))


def render(ws: models.Workspace | typing.Any, hosts: typing.Mapping[typing.Any, workspace_disk.HostDisk] | None = None) -> schemas.Workspace:
    disk = workspace_disk.of(ws.id, ws.host_id, ws.disk_gb, hosts or {})
    return schemas.Workspace.model_validate({**{f: getattr(ws, f) for f in _COLUMNS}, "disk": dataclasses.asdict(disk)})


async def render_all(
    session: typing.Any,
    rows: typing.Sequence[models.Workspace | typing.Any],
    hosts: typing.Mapping[typing.Any, workspace_disk.HostDisk] | None = None,
) -> list[schemas.Workspace]:
    """Workspaces as the API shows them: their disk from their hosts' latest reports (one query, unless ``hosts`` has them),
    and one waiting for a host says where it stands in the queue (one query, only if any may wait)."""
    if hosts is None:
        hosts = await workspace_disk.host_disks(session, (r.host_id for r in rows))
    out = [render(r, hosts) for r in rows]
    maybe = [w.id for w in out if w.host_id is None and w.observed_state is models.ObservedState.PENDING]
    places = await queue.places(session, maybe) if maybe else {}
    for w in out:
        place = places.get(w.id)
        if place is not None:
            w.queue_position = place.position
            w.state_reason = domain_queue.describe(w.state_reason, place)
    return out


async def accepted(call: endpoint.Call, done: workspaces.Accepted) -> schemas.WorkspaceAccepted:
    if done.hosts is not None and done.workspace.host_id is not None:
        # Placed, its host's disk read with it: nothing waits in the queue, so nothing more to read (and
        # an autocommit create opens no transaction session just to render).
        return schemas.WorkspaceAccepted(workspace=render(done.workspace, done.hosts), job=jobs_view.render(done.job))
    # As GET shows them: a create left waiting for a host says its place in the queue, on the job and the workspace.
    job = (await jobs_view.render_all(call.session, [done.job]))[0]
    return schemas.WorkspaceAccepted(workspace=(await render_all(call.session, [done.workspace], done.hosts))[0], job=job)


@routes.post("/v1/workspaces", body=schemas.WorkspaceCreate, response=schemas.WorkspaceAccepted, status=202)
async def create_workspace(call: endpoint.Call) -> schemas.WorkspaceAccepted:
    """Create a workspace: placed on the eligible host with the least disk used, or pending with the reason.

    Answers 202 with the workspace and the job that creates its container.
    """
    body: schemas.WorkspaceCreate = call.body
    new = workspaces.NewWorkspace(
        name=body.name,
        cpus=body.cpus,
        memory_mb=body.memory_mb,
        disk_gb=body.disk_gb,
        image=body.image,
        image_ref=body.image_ref,
        env=dict(body.env),
        command=list(body.command) if body.command else None,
        ports=[
            messages.PortSpec(container_port=port, protocol=proto)
            for port, proto in dict.fromkeys((p.container_port, p.protocol) for p in body.ports)
        ],
    )
    app = call.request.app
    direct = workspaces.Direct(app[keys.HOT_READS], app[keys.READ_SESSIONS]) if call.standalone else None
    return await accepted(call, await workspaces.create_workspace(call.session, call.user, new, call.settings, direct=direct))


@routes.get("/v1/workspaces", query=schemas.WorkspaceQuery, response=schemas.WorkspacePage)
async def list_workspaces(call: endpoint.Call) -> schemas.WorkspacePage:
    """List your workspaces (an admin sees all), newest first, with filters and a cursor."""
    q: schemas.WorkspaceQuery = call.query
    rows, cursor = await workspaces.list_workspaces(
        call.session,
        call.user,
        limit=call.page_size(),
        cursor=q.cursor,
        observed_state=q.state,
        desired_state=q.desired_state,
        host_id=q.host_id,
        image_id=q.image_id,
        name=q.name,
    )
    return schemas.WorkspacePage(items=await render_all(call.session, rows), next_cursor=cursor)


@routes.get("/v1/workspaces/{workspace_id}", response=schemas.Workspace, query=common.WatchQuery, watchable=True, hot=True)
async def get_workspace(call: endpoint.Call) -> endpoint.Document:
    """Get one workspace (404 if it is not yours).

    With `index`, a blocking read: it answers when the workspace's index (`version`, header X-A4C-Index) is past `index`, or after `wait`.
    """
    # The hot read: one prepared statement, rendered without a model (controlplane/services/workspace_read.py).
    user = call.user
    app = call.request.app
    workspace_id, q = call.params["workspace_id"], call.query
    args = (workspace_read.SQL, workspace_id, None if user.is_admin else user.user_id)
    row = await app[keys.WATCHES].read("workspace", workspace_id, user.user_id, q.index, q.wait, lambda: app[keys.HOT_READS].row(*args))
    if row is None:
        raise errors.NotFound("no such workspace")
    return endpoint.Document(workspace_read.document(row), index=row["version"])


@routes.post("/v1/workspaces/{workspace_id}/start", response=schemas.WorkspaceAccepted, status=202)
async def start_workspace(call: endpoint.Call) -> schemas.WorkspaceAccepted:
    """Start a stopped or failed workspace (202 + job); 409 if its host no longer has the CPUs or memory it released."""
    return await accepted(call, await workspaces.start_workspace(call.session, call.user, call.params["workspace_id"], call.settings))


@routes.post("/v1/workspaces/{workspace_id}/stop", response=schemas.WorkspaceAccepted, status=202)
async def stop_workspace(call: endpoint.Call) -> schemas.WorkspaceAccepted:
    """Stop a running workspace; it keeps its host and disk, and releases its CPUs and memory for others (202 + job)."""
    return await accepted(call, await workspaces.stop_workspace(call.session, call.user, call.params["workspace_id"], call.settings))


@routes.post("/v1/workspaces/{workspace_id}/recreate", response=schemas.WorkspaceAccepted, status=202, errors=(409,))
async def recreate_workspace(call: endpoint.Call) -> schemas.WorkspaceAccepted:
    """Recreate a lost workspace on another host (its old host is down; the data there is not moved) (202 + job)."""
    return await accepted(call, await workspaces.recreate_workspace(call.session, call.user, call.params["workspace_id"], call.settings))


@routes.delete("/v1/workspaces/{workspace_id}", response=schemas.WorkspaceAccepted, status=202)
async def delete_workspace(call: endpoint.Call) -> schemas.WorkspaceAccepted:
    """Delete a workspace and its container (202 + job); one never placed is gone at once."""
    return await accepted(call, await workspaces.delete_workspace(call.session, call.user, call.params["workspace_id"], call.settings))
