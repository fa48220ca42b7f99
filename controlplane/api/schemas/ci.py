"""CI systems: identities that sign build requests on ``<prefix>.ci-builds`` (docs/ci.md)."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from controlplane.api.schemas import common
from controlplane.api.schemas import images as image_schemas
from controlplane.api.schemas import users as user_schemas

CI_SYSTEM_NAME = r"^[a-z][a-z0-9_.-]{0,39}$"

# ``name`` (that image of any owner) or ``owner/name`` (that user's only): image names are per owner (migration 0008).
IMAGE_ENTRY = rf"^(?:{user_schemas.USER_NAME[1:-1]}/)?{image_schemas.IMAGE_NAME[1:-1]}$"
ImageName = typing.Annotated[str, pydantic.Field(min_length=1, max_length=193, pattern=IMAGE_ENTRY)]
UserName = typing.Annotated[str, pydantic.Field(pattern=user_schemas.USER_NAME)]


class CiSystemCreate(common.Body):
    name: str = pydantic.Field(pattern=CI_SYSTEM_NAME, description="Messages name it in ci_system; requested_by on its jobs is ci:<name>.")
    description: str = pydantic.Field(default="", max_length=200, pattern=common.NO_CONTROL)
    images: list[ImageName] = pydantic.Field(
        default_factory=list, max_length=1000, description="Images it may build: NAME (any owner's image of that name) or OWNER/NAME (that user's)."
    )
    owners: list[UserName] = pydantic.Field(default_factory=list, max_length=1000, description="Users whose images it may build, all of them.")


class CiSystem(common.Out):
    id: uuid.UUID
    name: str
    description: str
    images: list[str]
    owners: list[str]
    created_at: datetime.datetime


class CiSystemIssued(CiSystem):
    key: str = pydantic.Field(description="The HMAC key its messages are signed with. Shown once; keep it in the CI system's secret store.")


class CiSystemPage(common.Page[CiSystem]):
    pass
