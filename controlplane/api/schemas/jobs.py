"""Jobs: one asynchronous operation (workspace create/start/stop/delete, image build, cleanup)."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from controlplane.api.schemas import common
from controlplane.db import models


class Job(common.Out):
    id: uuid.UUID
    kind: models.JobKind
    status: models.JobStatus
    source: models.JobSource
    requested_by: str | None = pydantic.Field(
        default=None, description="Who asked besides user_name: ci:<system> for a signed CI message (docs/ci.md), else null."
    )
    user_id: uuid.UUID | None
    user_name: str | None
    host_id: uuid.UUID | None
    host_name: str | None
    image_id: uuid.UUID | None
    image_name: str | None
    workspace_id: uuid.UUID | None
    workspace_name: str | None
    reason: str = pydantic.Field(
        description='Why it is pending, or why it went to this host. A job waiting for a host ends with its place in the queue, e.g. "; 3rd in the queue of 5".'
    )
    queue_position: int | None = pydantic.Field(
        default=None,
        ge=1,
        description="1-based place of a workspace create waiting for a host among all that wait, in the order they are placed (oldest first); "
        "null when the job is not waiting for placement. Computed when read, so always current.",
    )
    placement: dict[str, typing.Any] | None = pydantic.Field(
        description="The placement record: chosen host and why the others were not. Its counts cover the hosts examined"
        " ('examined': how many, and whether that was the whole fleet; it is when nothing fits)."
    )
    error: str | None = pydantic.Field(description="The real error text of a failed job.")
    log_tail: str = pydantic.Field(description="The last lines of its log (build output).")
    result: dict[str, typing.Any]
    attempts: int
    created_at: datetime.datetime
    updated_at: datetime.datetime
    dispatched_at: datetime.datetime | None
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    version: int


class JobPage(common.Page[Job]):
    pass


class JobList(common.Out):
    jobs: list[Job]


class JobQuery(common.ListQuery):
    status: models.JobStatus | None = None
    kind: models.JobKind | None = None
    workspace_id: common.QueryUUID | None = None
    image_id: common.QueryUUID | None = None
    host_id: common.QueryUUID | None = None
