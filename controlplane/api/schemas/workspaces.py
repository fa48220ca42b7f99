"""Workspaces: the create body, the workspace as shown, the list query."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from controlplane.api.schemas import common, jobs
from controlplane.db import models

WORKSPACE_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
IMAGE_NAME = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$"
# A Docker reference: [registry[:port]/]path[:tag][@digest], lowercase path.
DOCKER_REF = r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"

EnvName = typing.Annotated[str, pydantic.StringConstraints(pattern=ENV_NAME)]
EnvValue = typing.Annotated[str, pydantic.StringConstraints(max_length=4096, pattern=common.NO_NUL)]


CommandArg = typing.Annotated[str, pydantic.StringConstraints(max_length=4096, pattern=common.NO_NUL)]
COMMAND_RULE = (
    'The workspace\'s main process, replacing the image\'s CMD (its ENTRYPOINT stays), e.g. ["httpd", "-f"]. '
    "Absent: the image's command runs, unless it would exit at once without a terminal (none, or a bare shell or REPL "
    "such as sh, bash or python3): then a keep-alive runs, so the workspace stays up until it is stopped. "
    "Docker's init is PID 1 either way (docs/workspaces.md)."
)


class Port(common.Body):
    container_port: int = pydantic.Field(ge=1, le=65535)
    protocol: typing.Literal["tcp", "udp"] = "tcp"


class WorkspaceCreate(common.Body):
    """Exactly one of ``image`` (a registered image you own or that is shared) or ``image_ref`` (a raw Docker reference)."""

    model_config = pydantic.ConfigDict(json_schema_extra=common.one_of_schema("image", "image_ref"))

    name: str = pydantic.Field(pattern=WORKSPACE_NAME, description="Unique among your live workspaces.")
    # Absent rather than null: `str = None` keeps null out of the contract.
    image: str = pydantic.Field(
        default=None,
        max_length=128,
        pattern=IMAGE_NAME,
        description="Name of a registered image: your own of that name, else the shared one (names are per owner).",
    )  # type: ignore[assignment]
    image_ref: str = pydantic.Field(default=None, max_length=255, pattern=DOCKER_REF, description="A Docker image reference, e.g. debian:12.")  # type: ignore[assignment]
    cpus: float = pydantic.Field(gt=0, le=256, multiple_of=0.01)
    memory_mb: int = pydantic.Field(ge=16, le=4_194_304)
    disk_gb: int = pydantic.Field(
        ge=1,
        le=65_536,
        description="Disk reservation in GiB: counts against the host's disk at placement; a hard cap only on hosts that enforce disk limits (docs/operations/disk.md).",
    )
    env: dict[EnvName, EnvValue] = pydantic.Field(default_factory=dict, max_length=200, json_schema_extra=common.keys_matching(ENV_NAME))
    ports: list[Port] = pydantic.Field(default_factory=list, max_length=32, description="Repeats are ignored.")
    command: list[CommandArg] = pydantic.Field(
        default=None,  # type: ignore[arg-type]
        min_length=1,
        max_length=64,
        description=COMMAND_RULE,
    )

    @pydantic.model_validator(mode="after")
    def _one_image(self) -> WorkspaceCreate:
        common.exactly_one(self, "image", "image_ref")
        return self


class PublishedPort(common.Out):
    container_port: int
    protocol: str
    host_ip: str
    host_port: int


class PortOut(common.Out):
    container_port: int
    protocol: str


class WorkspaceDisk(common.Out):
    """Its disk, computed when read from its host's latest disk report (docs/operations/disk.md)."""

    reserved_bytes: int = pydantic.Field(description="disk_gb in bytes (GiB): what placement set aside on its host.")
    used_bytes: int | None = pydantic.Field(
        description="What its container's writable layer holds, per its host's latest disk report; null when unknown "
        "(no host, no report yet, or no container)."
    )
    enforced: bool | None = pydantic.Field(
        description="Whether its host caps it at the reservation (the storage driver allows it); false: reserved, not "
        "enforced; null when its host has not said."
    )
    over: bool | None = pydantic.Field(description="used_bytes > reserved_bytes; null when the use is unknown.")


class Workspace(common.Out):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    image_id: uuid.UUID | None
    image_ref: str
    host_id: uuid.UUID | None
    desired_state: models.DesiredState
    observed_state: models.ObservedState
    state_reason: str = pydantic.Field(
        description='Why it is pending, failed or lost; empty otherwise. A failed one that did not stay up gives its exit code, restart count and last log lines. One waiting for a host ends with its place in the queue, e.g. "; 3rd in the queue of 5".'
    )
    queue_position: int | None = pydantic.Field(
        default=None,
        ge=1,
        description="1-based place among the workspaces waiting for a host, in the order they are placed (oldest first); null when not waiting. Computed when read.",
    )
    cpus: float
    memory_mb: int
    disk_gb: int = pydantic.Field(description="Disk reservation in GiB; enforced only where disk.enforced is true.")
    disk: WorkspaceDisk
    env: dict[str, str]
    ports: list[PortOut]
    command: list[str] | None = pydantic.Field(default=None, description="The main process given at create; null: " + COMMAND_RULE)
    published_ports: list[PublishedPort]
    container_id: str | None
    placement: dict[str, typing.Any] | None = pydantic.Field(
        description="Why this host, and why not the others: the placement record, whose counts cover the hosts examined"
        " ('examined': how many, and whether that was the whole fleet)."
    )
    created_at: datetime.datetime
    updated_at: datetime.datetime
    version: int


class WorkspaceAccepted(common.Out):
    """202: the change is recorded; the job carries it out."""

    workspace: Workspace
    job: jobs.Job


class WorkspacePage(common.Page[Workspace]):
    pass


class WorkspaceQuery(common.ListQuery):
    state: models.ObservedState | None = pydantic.Field(default=None, description="Observed state.")
    desired_state: models.DesiredState | None = None
    host_id: common.QueryUUID | None = None
    image_id: common.QueryUUID | None = None
    name: str | None = pydantic.Field(default=None, pattern=WORKSPACE_NAME)
