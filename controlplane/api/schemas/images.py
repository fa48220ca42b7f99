"""Images (an inline Dockerfile or a git context) and their cron schedules."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from controlplane.api.schemas import common

IMAGE_NAME = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$"
# http(s)/git/ssh/file URLs, or scp-like user@host:path.
GIT_URL = r"^(?:(?:https?|git|ssh|file)://[^\s\x00]+|[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:[^\s\x00]+)$"
GIT_REF = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$"
BUILD_ARG = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# Relative, '/'-separated, no empty segment and no '..' segment: the context stays inside the clone.
_SEGMENT = r"(?:\.|\.\.[^/\x00]+|\.[^./\x00][^/\x00]*|[^./\x00][^/\x00]*)"
GIT_PATH = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"

ArgName = typing.Annotated[str, pydantic.StringConstraints(pattern=BUILD_ARG)]
ArgValue = typing.Annotated[str, pydantic.StringConstraints(max_length=4096, pattern=common.NO_NUL)]


class ImageCreate(common.Body):
    """Exactly one of ``dockerfile`` (inline) or ``git_url`` (a build context: URL + ref + path)."""

    model_config = pydantic.ConfigDict(json_schema_extra=common.one_of_schema("dockerfile", "git_url"))

    name: str = pydantic.Field(max_length=128, pattern=IMAGE_NAME)
    dockerfile: str = pydantic.Field(default=None, min_length=1, max_length=65_536, pattern=common.NO_NUL)
    git_url: str = pydantic.Field(default=None, max_length=2048, pattern=GIT_URL)
    git_ref: str = pydantic.Field(default=None, pattern=GIT_REF, description="Branch, tag or commit; default HEAD.")
    git_path: str = pydantic.Field(
        default=None, max_length=1024, pattern=GIT_PATH, description="Context directory inside the repository (relative, no '..'); default '.'."
    )
    build_args: dict[ArgName, ArgValue] = pydantic.Field(default_factory=dict, max_length=100, json_schema_extra=common.keys_matching(BUILD_ARG))
    shared: bool = pydantic.Field(default=False, description="Other users may run workspaces from it.")

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> "ImageCreate":
        common.exactly_one(self, "dockerfile", "git_url")
        return self


class Image(common.Out):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    shared: bool
    dockerfile: str | None
    git_url: str | None
    git_ref: str | None
    git_path: str | None
    build_args: dict[str, str]
    tag: str = pydantic.Field(description="The Docker tag agents build it as; workspaces from this image run it.")
    latest_digest: str | None
    latest_build_job_id: uuid.UUID | None
    latest_built_at: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class ImagePage(common.Page[Image]):
    pass


class ImageQuery(common.ListQuery):
    name: str | None = pydantic.Field(default=None, max_length=128, pattern=IMAGE_NAME)
    shared: common.QueryBool | None = None


class ScheduleCreate(common.Body):
    cron: str = pydantic.Field(min_length=1, max_length=128, pattern=common.NO_NUL, description="Standard 5-field crontab: minute hour day-of-month month day-of-week.")
    timezone: str = pydantic.Field(default="UTC", min_length=1, max_length=64, pattern=common.NO_NUL, description="IANA time zone, e.g. Europe/Berlin.")
    enabled: bool = True


class Schedule(common.Out):
    id: uuid.UUID
    image_id: uuid.UUID
    owner_id: uuid.UUID
    cron: str
    timezone: str
    enabled: bool
    next_run_at: datetime.datetime | None
    last_run_at: datetime.datetime | None
    last_job_id: uuid.UUID | None
    next_runs: list[datetime.datetime] = pydantic.Field(description="The next 5 fire times (UTC).")
    created_at: datetime.datetime


class ScheduleList(common.Out):
    items: list[Schedule]
