"""Users, API tokens and enrolment tokens (admin only), and the agent enrolment exchange."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from controlplane.api.schemas import common
from controlplane.db import models

USER_NAME = r"^[a-z][a-z0-9_.-]{0,63}$"
HOST_NAME = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
LABEL_KEY = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$"

LabelKey = typing.Annotated[str, pydantic.StringConstraints(pattern=LABEL_KEY)]
LabelValue = typing.Annotated[str, pydantic.StringConstraints(max_length=255, pattern=common.NO_NUL)]


class UserCreate(common.Body):
    name: str = pydantic.Field(pattern=USER_NAME)
    role: models.Role = models.Role.USER


class User(common.Out):
    id: uuid.UUID
    name: str
    role: models.Role
    disabled: bool
    created_at: datetime.datetime


class UserPage(common.Page[User]):
    pass


class TokenCreate(common.Body):
    name: str = pydantic.Field(default="", max_length=100, pattern=common.NO_NUL, description="What it is for, shown in listings.")
    expires_in_days: int | None = pydantic.Field(default=None, ge=1, le=3650, description="Default: auth.token_ttl_days (none = never).")


class Token(common.Out):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str = pydantic.Field(description="The first characters, to tell tokens apart.")
    created_at: datetime.datetime
    expires_at: datetime.datetime | None
    revoked_at: datetime.datetime | None
    last_used_at: datetime.datetime | None


class TokenIssued(Token):
    token: str = pydantic.Field(description="The bearer token. Shown once; only its SHA-256 is stored.")


class TokenList(common.Out):
    items: list[Token]


class EnrolmentTokenCreate(common.Body):
    description: str = pydantic.Field(default="", max_length=200, pattern=common.NO_NUL)
    max_uses: int | None = pydantic.Field(
        default=None, ge=1, le=1_000_000, description="Hosts it may enrol. Default: enrolment.token_max_uses (1); ask for more to enrol a fleet."
    )
    expires_in_seconds: float | None = pydantic.Field(
        default=None, gt=0, le=31_622_400, description="Lifetime. Default: enrolment.token_ttl (3600); at most a year."
    )


class EnrolmentToken(common.Out):
    id: uuid.UUID
    prefix: str
    description: str
    created_at: datetime.datetime
    expires_at: datetime.datetime | None
    revoked_at: datetime.datetime | None
    max_uses: int | None
    uses: int


class EnrolmentTokenIssued(EnrolmentToken):
    token: str = pydantic.Field(description="Give this to the agent's config. Shown once; only its SHA-256 is stored.")


class EnrolmentTokenPage(common.Page[EnrolmentToken]):
    pass


class AgentCapacity(common.Body):
    cpus: float = pydantic.Field(gt=0, le=100_000)
    memory_mb: int = pydantic.Field(gt=0, le=2**40)
    disk_bytes: int = pydantic.Field(ge=0, le=2**62)


class EnrolRequest(common.Body):
    token: str = pydantic.Field(min_length=1, max_length=256, pattern=common.NO_NUL, description="An enrolment token from POST /v1/enrolment-tokens.")
    host_name: str = pydantic.Field(max_length=253, pattern=HOST_NAME)
    labels: dict[LabelKey, LabelValue] = pydantic.Field(default_factory=dict, max_length=64, json_schema_extra=common.keys_matching(LABEL_KEY))
    capacity: AgentCapacity
    agent_version: str = pydantic.Field(default="", max_length=64, pattern=common.NO_NUL)
    force: bool = pydantic.Field(
        default=False, description="Re-key a host that reported recently; only with an admin's bearer token in Authorization."
    )
    proof: str | None = pydantic.Field(
        default=None,
        min_length=64,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
        description="Re-key a host that reported recently by proving its current key: HMAC-SHA256 (hex) of the canonical JSON of "
        '{"purpose": "a4c-enrol", "host_name": ..., "token": ...} (shared/signing.py enrolment_proof).',
    )


class Enrolled(common.Out):
    host_id: uuid.UUID
    key: str = pydantic.Field(description="The host's signing key for commands and events. Shown once; store it mode 0600.")


class Me(common.Out):
    id: uuid.UUID
    name: str
    role: models.Role
    token_id: uuid.UUID | None
