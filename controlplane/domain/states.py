"""Every status the control plane stores, as enums: the one list each of them is spelled in. Pure: no I/O.

controlplane/db/models.py maps them onto PostgreSQL enum types (migration 0001
created those with the same values); pure decisions, the search grammar and
the API schemas compare against and list these members instead of copying
their strings. Members are ``str`` (``ObservedState.RUNNING == "running"``),
so rows, messages and JSON carry the plain value. A job's moves between its
states are in controlplane/domain/jobs.py.
"""

from __future__ import annotations

import enum


class Role(str, enum.Enum):
    ADMIN = "admin"
    USER = "user"


class HostStatus(str, enum.Enum):
    ACTIVE = "active"
    DOWN = "down"


class DesiredState(str, enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


class ObservedState(str, enum.Enum):
    PENDING = "pending"  # not placed yet, or waiting (reason says why)
    CREATING = "creating"  # command issued, no container reported yet
    RUNNING = "running"
    STOPPED = "stopped"
    EXITED = "exited"  # died on its own
    LOST = "lost"  # its host is down; never recreated silently
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class JobStatus(str, enum.Enum):
    QUEUED = "queued"  # written, not yet handed to an agent
    PENDING = "pending"  # cannot proceed yet; ``reason`` says why
    DISPATCHED = "dispatched"  # command published, not yet acknowledged
    RUNNING = "running"  # acknowledged by the agent
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL


class JobKind(str, enum.Enum):
    WORKSPACE_CREATE = "workspace_create"
    WORKSPACE_START = "workspace_start"
    WORKSPACE_STOP = "workspace_stop"
    WORKSPACE_DELETE = "workspace_delete"
    IMAGE_BUILD = "image_build"
    HOST_CLEANUP = "host_cleanup"


class JobSource(str, enum.Enum):
    API = "api"
    SCHEDULE = "schedule"
    CI = "ci"
    WEBHOOK = "webhook"
    RECONCILER = "reconciler"


FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
WAITING = frozenset({JobStatus.PENDING, JobStatus.QUEUED})
IN_FLIGHT = frozenset({JobStatus.DISPATCHED, JobStatus.RUNNING})
LIVE_JOBS = WAITING | IN_FLIGHT
WORKSPACE_KINDS = frozenset({JobKind.WORKSPACE_CREATE, JobKind.WORKSPACE_START, JobKind.WORKSPACE_STOP, JobKind.WORKSPACE_DELETE})
