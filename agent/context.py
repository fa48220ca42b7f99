"""What the agent's components share, passed explicitly (no module globals).

``settings`` is read at the point of use, so a SIGHUP reload (which swaps
:attr:`Context.settings`) reaches every loop at its next iteration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import typing

from agent import docker_client, store
from agent import health as health_mod
from agent import identity as identity_mod
from agent import publisher as publisher_mod
from agent import settings as agent_settings
from agent.domain import disk_limits as disk_limits_rule


@dataclasses.dataclass
class Context:
    settings: agent_settings.Settings
    identity: identity_mod.Identity
    docker: docker_client.Docker
    publisher: publisher_mod.Publisher
    health: health_mod.Health
    marks: store.WorkspaceMarks
    expectations: Expectations = dataclasses.field(default_factory=lambda: Expectations())
    # Where the control plane reaches this agent's exec/logs listener (agent/access.py); None while it is not up.
    access_url: str | None = None
    # Whether workspaces' disk_gb is enforced here (agent/disk_limits.py); None until Docker answered once.
    disk_limits: disk_limits_rule.Decision | None = None
    # What the storage driver could do, whatever the setting says.
    disk_limits_able: disk_limits_rule.Decision | None = None

    @property
    def host_id(self) -> str:
        return self.identity.host_id


class Expectations:
    """Workspaces the agent itself is changing right now (and for a short tail after).

    The Docker event watcher skips events for these: the command handler
    reports the state change itself, with the job that caused it.
    """

    def __init__(self, tail: float = 3.0) -> None:
        self.tail = tail
        self._active: dict[str, int] = {}
        self._until: dict[str, float] = {}

    @contextlib.contextmanager
    def expect(self, workspace_id: str) -> typing.Iterator[None]:
        self._active[workspace_id] = self._active.get(workspace_id, 0) + 1
        try:
            yield
        finally:
            self._active[workspace_id] -= 1
            if not self._active[workspace_id]:
                del self._active[workspace_id]
            self._until[workspace_id] = time.monotonic() + self.tail

    def settling(self, workspace_id: str) -> bool:
        """In the tail after the agent's own change (no longer changing it): an event now may be its own, or someone else's."""
        return workspace_id not in self._active and self.expected(workspace_id)

    def expected(self, workspace_id: str) -> bool:
        if workspace_id in self._active:
            return True
        until = self._until.get(workspace_id)
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[workspace_id]
            return False
        return True
