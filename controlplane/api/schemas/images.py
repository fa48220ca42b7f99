"""Images (an inline Dockerfile or a git context) and their cron schedules."""

from __future__ import annotations

import datetime
import re
import typing
import uuid

import pydantic
import pydantic_core

from controlplane import cron as cron_rules
from controlplane.api.schemas import common

IMAGE_NAME = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$"
# http(s)/git/ssh/file URLs, or scp-like user@host:path. Which schemes are
# accepted is a setting (api.git_url_schemes, default https and ssh): see git_scheme.
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
    # Absent rather than null: `str = None` keeps null out of the contract; mypy is told per field.
    dockerfile: str = pydantic.Field(default=None, min_length=1, max_length=65_536, pattern=common.NO_NUL)  # type: ignore[assignment]
    git_url: str = pydantic.Field(  # type: ignore[assignment]
        default=None,
        max_length=2048,
        pattern=GIT_URL,
        description="https://… or ssh://… (or user@host:path); http, git and file URLs only where api.git_url_schemes allows them (422 otherwise).",
    )
    git_ref: str = pydantic.Field(default=None, pattern=GIT_REF, description="Branch, tag or commit; default HEAD.")  # type: ignore[assignment]
    git_path: str = pydantic.Field(  # type: ignore[assignment]
        default=None, max_length=1024, pattern=GIT_PATH, description="Context directory inside the repository (relative, no '..'); default '.'."
    )
    build_args: dict[ArgName, ArgValue] = pydantic.Field(default_factory=dict, max_length=100, json_schema_extra=common.keys_matching(BUILD_ARG))
    shared: bool = pydantic.Field(default=False, description="Other users may run workspaces from it.")

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> ImageCreate:
        common.exactly_one(self, "dockerfile", "git_url")
        return self


_CHANGEABLE = ("dockerfile", "git_url", "git_ref", "git_path", "build_args", "shared")


class ImageUpdate(common.Body):
    """The fields to change; absent ones stay. The name cannot change (workspaces and jobs refer to it).

    ``dockerfile`` switches the image to an inline Dockerfile (its git context
    goes); ``git_url`` switches it to a git context (``git_ref``/``git_path``
    default to the current ones, else HEAD and "."); ``git_ref``/``git_path``
    alone change a git context. ``build_args`` replaces them all. The next
    build uses the change; copies already built stay until then.
    """

    model_config = pydantic.ConfigDict(json_schema_extra={"minProperties": 1, "not": {"required": ["dockerfile", "git_url"]}})

    dockerfile: str = pydantic.Field(default=None, min_length=1, max_length=65_536, pattern=common.NO_NUL)  # type: ignore[assignment]
    git_url: str = ImageCreate.model_fields["git_url"]  # type: ignore[assignment]
    git_ref: str = ImageCreate.model_fields["git_ref"]  # type: ignore[assignment]
    git_path: str = ImageCreate.model_fields["git_path"]  # type: ignore[assignment]
    build_args: dict[ArgName, ArgValue] = pydantic.Field(default=None, max_length=100, json_schema_extra=common.keys_matching(BUILD_ARG))  # type: ignore[arg-type]
    shared: bool = pydantic.Field(
        default=None, description="Other users may run workspaces from it; a shared name must be unique among shared images."
    )  # type: ignore[assignment]

    @pydantic.model_validator(mode="after")
    def _something(self) -> ImageUpdate:
        if not self.model_fields_set:
            raise pydantic_core.PydanticCustomError(
                "at_least_one", "give at least one of {choices}", {"field": "dockerfile", "choices": ", ".join(_CHANGEABLE)}
            )
        if self.dockerfile is not None and self.git_url is not None:
            raise pydantic_core.PydanticCustomError("at_most_one", "give at most one of dockerfile or git_url", {"field": "dockerfile"})
        return self

    def change(self) -> dict[str, typing.Any]:
        return {name: getattr(self, name) for name in _CHANGEABLE if name in self.model_fields_set}


def git_url_pattern(schemes: typing.Collection[str]) -> str:
    """GIT_URL narrowed to ``schemes`` (api.git_url_schemes): what one instance documents in its OpenAPI."""
    urls = "|".join(sorted(s for s in schemes if s != "ssh") + (["ssh"] if "ssh" in schemes else []))
    scp = r"|[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:[^\s\x00]+" if "ssh" in schemes else ""
    return rf"^(?:(?:{urls})://[^\s\x00]+{scp})$" if urls else "^$"


def document_git_url(document: dict[str, typing.Any], schemes: typing.Collection[str]) -> None:
    """Narrow git_url's pattern (ImageCreate, ImageUpdate) in a built OpenAPI document to the schemes this instance accepts."""
    for body in ("ImageCreate", "ImageUpdate"):
        if body in document["components"]["schemas"]:
            document["components"]["schemas"][body]["properties"]["git_url"]["pattern"] = git_url_pattern(schemes)


def git_scheme(url: str) -> str:
    """The scheme of a GIT_URL: scp-like user@host:path is ssh."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else "ssh"


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


def _cron_form(value: str) -> str:
    if not cron_rules.conforms(value):
        cron_rules.parse(value)  # raises, naming the part that is wrong
        raise ValueError("not a cron expression")
    return value


def _zone_form(value: str) -> str:
    if re.fullmatch(cron_rules.ZONE_PATTERN, value) is None:
        raise ValueError("not a time zone name: use an IANA name like Europe/Berlin")
    return value


CRON_DESCRIPTION = (
    "Cron expression as Vixie cron reads it: five fields `minute hour day-of-month month day-of-week`, each `*`,"
    " a value, a range `low-high` or a comma list of them, optionally stepped (`*/15`, `1-31/2`); months jan-dec,"
    " days sun-sat, day-of-week 0 and 7 are Sunday. Or a macro: @yearly @annually @monthly @weekly @daily @midnight"
    " @hourly. When both day fields are restricted (neither starts with `*`), a day matching either fires."
    " Checked beyond the pattern: ranges run low to high, and the expression fires within 50 years."
)


class ScheduleCreate(common.Body):
    cron: typing.Annotated[str, pydantic.AfterValidator(_cron_form)] = pydantic.Field(
        min_length=1, max_length=128, description=CRON_DESCRIPTION, json_schema_extra={"pattern": cron_rules.PATTERN}
    )
    timezone: typing.Annotated[str, pydantic.AfterValidator(_zone_form)] = pydantic.Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone the expression is read in, e.g. Europe/Berlin (must exist in the server's tz database).",
        json_schema_extra={"pattern": cron_rules.ZONE_PATTERN},
    )
    enabled: bool = True


class ScheduleUpdate(common.Body):
    """Switch a schedule off or on (``enabled``), or change its expression or zone; absent fields stay."""

    model_config = pydantic.ConfigDict(json_schema_extra={"minProperties": 1})

    cron: typing.Annotated[str, pydantic.AfterValidator(_cron_form)] = pydantic.Field(  # type: ignore[assignment]
        default=None, min_length=1, max_length=128, description=CRON_DESCRIPTION, json_schema_extra={"pattern": cron_rules.PATTERN}
    )
    timezone: typing.Annotated[str, pydantic.AfterValidator(_zone_form)] = pydantic.Field(  # type: ignore[assignment]
        default=None,
        min_length=1,
        max_length=64,
        description="IANA time zone, e.g. Europe/Berlin.",
        json_schema_extra={"pattern": cron_rules.ZONE_PATTERN},
    )
    enabled: bool = pydantic.Field(default=None, description="false: it stops firing (kept, with its history); true: it fires again from now.")  # type: ignore[assignment]

    @pydantic.model_validator(mode="after")
    def _something(self) -> ScheduleUpdate:
        if not self.model_fields_set:
            raise pydantic_core.PydanticCustomError("at_least_one", "give at least one of cron, timezone or enabled", {"field": "enabled"})
        return self


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
    last_outcome: str = pydantic.Field(
        default="", description="What the last firing did: the build it requested, or the queued or running build of the image it joined."
    )
    next_runs: list[datetime.datetime] = pydantic.Field(description="The next 5 fire times (UTC).")
    created_at: datetime.datetime


class ScheduleList(common.Out):
    items: list[Schedule]
