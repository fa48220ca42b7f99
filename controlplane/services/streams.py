"""Where a workspace's exec or logs stream goes: ownership, state, the agent's address, and its grant.

The control plane never hands out the Docker socket: it checks the caller
may see the workspace (404 otherwise, as for every workspace endpoint),
then signs a grant for exactly one action with the host's key
(shared/access.py) and relays the stream (controlplane/api/views/streams.py).
"""

from __future__ import annotations

import dataclasses
import typing
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from controlplane import errors
from controlplane.db import models
from controlplane.domain import way_back
from controlplane.services import access, workspaces
from shared import access as grants


@dataclasses.dataclass(frozen=True)
class Target:
    url: str
    header: str
    host_name: str


async def target(
    session: AsyncSession,
    principal: access.Principal,
    workspace_id: uuid.UUID,
    *,
    action: typing.Literal["exec", "logs"],
    argv: list[str] | None = None,
    tty: bool = False,
    follow: bool = False,
    tail: int | None = None,
) -> Target:
    ws = await workspaces.read_workspace(session, principal, workspace_id)
    if ws.host_id is None:
        raise errors.Conflict(f"workspace {ws.name} has no host yet ({ws.observed_state.value}); nothing runs to {action}")
    if action == "exec" and ws.observed_state is not models.ObservedState.RUNNING:
        way = way_back.advice(ws.name, ws.observed_state, ws.container_id is not None)
        raise errors.Conflict(f"workspace {ws.name} is {ws.observed_state.value}, not running; {way}")
    host = await session.get(models.Host, ws.host_id)
    if host is None:
        raise errors.Conflict(f"workspace {ws.name}'s host is gone")
    url = (host.heartbeat or {}).get("access_url")
    if not url:
        raise errors.Unavailable(f"the agent of host {host.name} serves no exec or logs streams (access.enabled off, too old, or not reporting)")
    grant = grants.Grant(
        host_id=str(host.id),
        workspace_id=str(ws.id),
        action=action,
        argv=argv or [],
        tty=tty,
        follow=follow,
        tail=tail,
        user=principal.name,
    )
    return Target(url=str(url).rstrip("/") + grants.PATH, header=grants.encode(grant, host.signing_key), host_name=host.name)
