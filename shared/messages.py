"""The wire schema of agent traffic: commands to agents, events from them.

Errors::

    MessageError           a body does not match the schema (names the field)

Every message is an :class:`Envelope` signed with the host key
(:mod:`shared.signing`). ``id`` makes a message idempotent to apply; ``seq`` is
the sender's monotonic version, so a consumer can drop anything older than
what it already applied (every consumer is idempotent). Commands carry the
outbox row id as ``seq``; agents use a time-based counter that survives
restarts (nanoseconds since the epoch, bumped past the last one issued).
"""

from __future__ import annotations

import enum
import typing
import uuid

import pydantic

from shared import clock, logs, signing


class MessageError(Exception):
    """A message body does not match its schema."""


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


# --- commands (control plane -> one agent) ---------------------------------


class CommandKind(str, enum.Enum):
    WORKSPACE_CREATE = "workspace.create"
    WORKSPACE_START = "workspace.start"
    WORKSPACE_STOP = "workspace.stop"
    WORKSPACE_DELETE = "workspace.delete"
    IMAGE_BUILD = "image.build"
    HOST_CLEANUP = "host.cleanup"
    JOB_CANCEL = "job.cancel"


class PortSpec(_Model):
    container_port: int = pydantic.Field(ge=1, le=65535)
    protocol: typing.Literal["tcp", "udp"] = "tcp"


class WorkspaceSpec(_Model):
    """Everything an agent needs to run (or re-run) one workspace container."""

    workspace_id: str
    name: str
    owner: str
    image: str
    cpus: float = pydantic.Field(gt=0)
    memory_mb: int = pydantic.Field(gt=0)
    disk_gb: int | None = pydantic.Field(default=None, gt=0)
    pids_limit: int = pydantic.Field(default=1024, gt=0)
    env: dict[str, str] = pydantic.Field(default_factory=dict)
    ports: list[PortSpec] = pydantic.Field(default_factory=list)
    command: list[str] | None = None


class WorkspaceCommand(_Model):
    job_id: str | None = None
    spec: WorkspaceSpec


class WorkspaceRef(_Model):
    job_id: str | None = None
    workspace_id: str


class BuildContext(_Model):
    """Either an inline Dockerfile or a git context (URL + ref + path)."""

    dockerfile: str | None = None
    git_url: str | None = None
    git_ref: str = "HEAD"
    git_path: str = "."
    dockerfile_path: str = "Dockerfile"

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> BuildContext:
        if (self.dockerfile is None) == (self.git_url is None):
            raise ValueError("give exactly one of dockerfile or git_url")
        return self


class BuildCommand(_Model):
    job_id: str
    image_id: str
    tag: str
    context: BuildContext
    build_args: dict[str, str] = pydantic.Field(default_factory=dict)
    deadline_s: float = pydantic.Field(default=1800.0, gt=0)


class CleanupCommand(_Model):
    job_id: str | None = None
    dry_run: bool = False


class JobCancel(_Model):
    """Stop the command of ``job_id`` if this agent is carrying it out (a person cancelled the job)."""

    job_id: str
    reason: str = pydantic.Field(default="", max_length=500)


COMMAND_PAYLOADS: dict[CommandKind, type[_Model]] = {
    CommandKind.WORKSPACE_CREATE: WorkspaceCommand,
    CommandKind.WORKSPACE_START: WorkspaceRef,
    CommandKind.WORKSPACE_STOP: WorkspaceRef,
    CommandKind.WORKSPACE_DELETE: WorkspaceRef,
    CommandKind.IMAGE_BUILD: BuildCommand,
    CommandKind.HOST_CLEANUP: CleanupCommand,
    CommandKind.JOB_CANCEL: JobCancel,
}


# --- events (one agent -> control plane) -----------------------------------


class EventKind(str, enum.Enum):
    JOB_PROGRESS = "job.progress"
    JOB_LOG = "job.log"
    JOB_RESULT = "job.result"
    WORKSPACE_STATE = "workspace.state"
    HEARTBEAT = "heartbeat"
    INVENTORY = "inventory"
    DISK = "disk"


class JobProgress(_Model):
    job_id: str
    phase: str = pydantic.Field(description="accepted, pulling, creating, building, …")
    message: str = ""


class JobLog(_Model):
    job_id: str
    lines: list[str]


class JobResult(_Model):
    job_id: str
    ok: bool
    error: str | None = None
    interrupted: bool = False
    result: dict[str, typing.Any] = pydantic.Field(default_factory=dict)


class PublishedPort(_Model):
    container_port: int
    protocol: str = "tcp"
    host_ip: str
    host_port: int


class WorkspaceState(_Model):
    workspace_id: str
    state: typing.Literal["creating", "running", "stopped", "exited", "failed", "missing", "deleted"]
    container_id: str | None = None
    ports: list[PublishedPort] = pydantic.Field(default_factory=list)
    exit_code: int | None = None
    restart_count: int | None = pydantic.Field(default=None, description="Set with failed: restarts Docker made before the agent stopped it.")
    reason: str = ""
    job_id: str | None = pydantic.Field(
        default=None,
        description="The job whose command made this change, so the control plane's line about it names the job. "
        "Sent only when that command carried a request id (the control plane is new enough to know this field); absent otherwise.",
    )

    @pydantic.model_serializer(mode="wrap")
    def _absent_job(self, handler: pydantic.SerializerFunctionWrapHandler) -> dict[str, typing.Any]:
        # Left out, not null, when unset: an older control plane refuses keys it does not know.
        data: dict[str, typing.Any] = handler(self)
        if data.get("job_id") is None:
            data.pop("job_id", None)
        return data


class Heartbeat(_Model):
    agent_version: str
    uptime_s: float
    cpus: float
    memory_mb: int
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    docker_ok: bool = True
    conditions: list[str] = pydantic.Field(default_factory=list, description="e.g. docker-unreachable, disk-pressure")
    # None from agents older than this field: the control plane then judges no job by it.
    jobs: list[str] | None = pydantic.Field(
        default=None,
        description="Ids of the jobs the agent holds at sending time (accepted and not yet reported finished). "
        "An acknowledged job missing from a heartbeat sent after the job's last event is no longer held.",
    )
    access_url: str | None = pydantic.Field(
        default=None, description="Where the control plane opens exec and logs streams on this agent (agent/access.py); None: it serves none."
    )
    # None from agents older than this field: they are sent no optional envelope field.
    features: list[str] | None = pydantic.Field(
        default=None, description="Optional command fields this agent accepts (FEATURES), so the relay sends them only to agents that do."
    )


class ContainerInfo(_Model):
    container_id: str
    workspace_id: str | None
    job_id: str | None = None
    name: str
    image: str
    state: str
    created_at: str | None = None
    ports: list[PublishedPort] = pydantic.Field(default_factory=list)


class ImageInfo(_Model):
    image_id: str
    tags: list[str]
    a4c_image: str | None = None
    job_id: str | None = pydantic.Field(default=None, description="The build job that made it (its a4c.job label).")
    size_bytes: int = 0


class Inventory(_Model):
    containers: list[ContainerInfo]
    images: list[ImageInfo]


class PathUsage(_Model):
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float


class CleanupReport(_Model):
    """One cleanup run: what it removed (or, in dry-run mode, would remove)."""

    job_id: str | None = pydantic.Field(default=None, description="Set when a host.cleanup command asked for the run.")
    trigger: typing.Literal["schedule", "pressure", "command"]
    dry_run: bool = False
    percent_before: float | None = pydantic.Field(default=None, description="Disk use of the fullest measured path.")
    projected_percent: float | None = pydantic.Field(default=None, description="Expected use after the planned removals.")
    percent_after: float | None = None
    removed_containers: list[str] = pydantic.Field(default_factory=list, description="Container ids.")
    removed_images: list[str] = pydantic.Field(default_factory=list, description="Image ids, least recently used first.")
    pruned_dangling_images: int = 0
    pruned_build_cache: bool = False
    reclaimed_bytes: int = 0
    errors: list[str] = pydantic.Field(default_factory=list)


class DiskLimits(_Model):
    """Whether this host's Docker caps each workspace's disk at its disk_gb (agent/domain/disk_limits.py)."""

    enforced: bool
    reason: str = pydantic.Field(max_length=500, description="Why, or why not, in words an operator understands.")


class DiskReport(_Model):
    paths: list[PathUsage]
    docker: dict[str, int] = pydantic.Field(default_factory=dict, description="Docker's own figures: images, containers, volumes, build_cache bytes")
    workspaces: dict[str, int] = pydantic.Field(default_factory=dict, description="writable-layer bytes per workspace id")
    cleanup: CleanupReport | None = pydantic.Field(
        default=None, description="Set on the report sent right after a cleanup run: what that run removed."
    )
    # Optional so reports from agents older than this field still validate.
    high_watermark: float | None = pydantic.Field(
        default=None, gt=0, le=100, description="The agent's cleanup.high_watermark (disk percent) when it sent this report."
    )
    # Optional so reports from agents older than this field still validate.
    disk_limits: DiskLimits | None = pydantic.Field(
        default=None, description="Whether workspaces' disk_gb is enforced on this host; null until Docker answered once."
    )


EVENT_PAYLOADS: dict[EventKind, type[_Model]] = {
    EventKind.JOB_PROGRESS: JobProgress,
    EventKind.JOB_LOG: JobLog,
    EventKind.JOB_RESULT: JobResult,
    EventKind.WORKSPACE_STATE: WorkspaceState,
    EventKind.HEARTBEAT: Heartbeat,
    EventKind.INVENTORY: Inventory,
    EventKind.DISK: DiskReport,
}


# --- the envelope -----------------------------------------------------------

# Optional envelope fields this code understands in commands; agents announce
# theirs in heartbeats (Heartbeat.features). A receiver refuses fields it does
# not know, so the control plane sends ``request_id`` only to agents that
# announced it, while agents send it back only on events about a command that
# carried it (docs/operations/logging.md).
REQUEST_ID_FEATURE = "request_id"
FEATURES = (REQUEST_ID_FEATURE,)


class Envelope(_Model):
    id: str = pydantic.Field(default_factory=lambda: uuid.uuid4().hex)
    kind: str
    host_id: str
    seq: int = pydantic.Field(ge=0)
    issued_at: float = pydantic.Field(default_factory=clock.time)
    payload: dict[str, typing.Any]
    request_id: str | None = pydantic.Field(
        default=None, pattern=logs.REQUEST_ID_PATTERN, description="The API request this message is part of (shared/logs.py); absent when none."
    )

    def wire(self) -> dict[str, typing.Any]:
        """The JSON body to sign: without ``request_id`` when there is none, as older code wrote it."""
        return self.model_dump(mode="json", exclude=None if self.request_id is not None else {"request_id"})


class SeqClock:
    """Monotonic event versions: ns since epoch, strictly rising, never below ``floor`` (agent/store.py keeps one across restarts)."""

    def __init__(self, floor: int = 0) -> None:
        self._last = floor

    def next(self) -> int:
        self._last = max(self._last + 1, clock.time_ns())
        return self._last


def encode(
    kind: CommandKind | EventKind,
    host_id: str,
    seq: int,
    payload: _Model,
    key: str,
    *,
    id: str | None = None,  # noqa: A002 - the envelope's field
    request_id: str | None = None,
) -> bytes:
    env = Envelope(kind=kind.value, host_id=host_id, seq=seq, payload=payload.model_dump(mode="json"), request_id=request_id)
    if id is not None:
        env.id = id
    return signing.sign(env.wire(), key)


def decode_envelope(body: dict[str, typing.Any]) -> Envelope:
    try:
        return Envelope.model_validate(body)
    except pydantic.ValidationError as exc:
        raise MessageError(_first_error(exc)) from None


def parse_command(env: Envelope) -> tuple[CommandKind, _Model]:
    try:
        kind = CommandKind(env.kind)
    except ValueError:
        raise MessageError(f"kind: unknown command {env.kind!r}") from None
    return kind, _parse(COMMAND_PAYLOADS[kind], env.payload)


def parse_event(env: Envelope) -> tuple[EventKind, _Model]:
    try:
        kind = EventKind(env.kind)
    except ValueError:
        raise MessageError(f"kind: unknown event {env.kind!r}") from None
    return kind, _parse(EVENT_PAYLOADS[kind], env.payload)


def _parse(model: type[_Model], payload: dict[str, typing.Any]) -> _Model:
    try:
        return model.model_validate(payload)
    except pydantic.ValidationError as exc:
        raise MessageError(_first_error(exc, prefix="payload")) from None


def _first_error(exc: pydantic.ValidationError, prefix: str = "") -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"]))
    return f"{loc}: {err['msg']}"
