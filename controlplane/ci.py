"""CI-triggered image builds: the ``<prefix>.ci-builds`` topic, signed.

A CI system (created by an admin, ``POST /v1/ci-systems``; docs/ci.md)
publishes one JSON message per build it wants, signed with its key like agent
traffic (:func:`shared.signing.sign_ci_build`)::

    {"ci_system": "jenkins", "issued_at": 1700000000, "image": "base", "git_ref": "main",
     "idempotency_key": "jenkins-1234", "requested_by": "https://ci/job/1234", "sig": "<hex HMAC-SHA256>"}

``image`` names a registered image the system may build (its ``images``, or
an image of one of its ``owners``); ``git_ref`` optionally overrides the
image's ref; ``idempotency_key`` (optional) makes a retried publish create
nothing new (without one, the signature is the key, so a replayed message
builds nothing either). The job's user is the image's owner, as for any
build of that image, and ``requested_by`` is ``ci:<system>`` (plus the
message's own ``requested_by`` text in parentheses).

One model, :class:`BuildRequest`, validates the topic's messages and the
authenticated HTTP webhook's bodies (``POST /v1/ci/builds``, which subclasses
it), so both refuse the same things: a NUL or other control character, an
over-long value. A message that cannot become a build (not JSON, unsigned,
an unknown system, a bad signature, stale, invalid, an unknown image, an
image outside the system's allowance) builds nothing: it is counted by
outcome in ``a4c_ci_builds_total`` and dead-lettered with the reason by
:func:`shared.consuming.consume`; the next message is processed: one bad
producer must not stop everybody's builds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import typing

import prometheus_client
import pydantic
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane import settings as cp_settings
from controlplane.api.schemas import ci as ci_schemas
from controlplane.api.schemas import common
from controlplane.api.schemas import images as image_schemas
from controlplane.db import models
from controlplane.services import access, ci_systems
from controlplane.services import images as image_service
from shared import consuming, signing, topics
from shared.domain import failures

logger = logging.getLogger(__name__)

RECEIVED = prometheus_client.Counter("a4c_ci_builds_total", "CI build requests", ["source", "outcome"])
MAX_MESSAGE_BYTES = 65_536  # a build request is a few hundred bytes


class BuildRequest(common.Body):
    image: str = pydantic.Field(min_length=1, max_length=128, pattern=image_schemas.IMAGE_NAME, description="Name of a registered image you may use.")
    git_ref: str | None = pydantic.Field(
        default=None, max_length=255, pattern=image_schemas.GIT_REF, description="Overrides the image's git ref for this build."
    )
    idempotency_key: str | None = pydantic.Field(
        default=None, min_length=1, max_length=150, pattern=common.NO_CONTROL, description="A retry with the same key builds nothing new."
    )
    requested_by: str | None = pydantic.Field(
        default=None, max_length=100, pattern=common.NO_CONTROL, description="Free text shown on the job, e.g. the CI job URL."
    )


class SignedBuildRequest(BuildRequest):
    """A message on the topic, once its signature is verified and ``sig`` removed."""

    ci_system: str = pydantic.Field(min_length=1, max_length=40, pattern=ci_schemas.CI_SYSTEM_NAME)
    issued_at: int = pydantic.Field(ge=0, le=2**40, description="Unix seconds when the message was signed.")


class Rejected(Exception):
    """The request cannot become a build (unknown image, outside the allowance…); ``cause`` is a metric label."""

    def __init__(self, message: str, cause: str = "rejected") -> None:
        super().__init__(message)
        self.cause = cause


class Gateway(typing.Protocol):
    async def system(self, name: str) -> ci_systems.Identity | None: ...

    async def submit(self, request: SignedBuildRequest, identity: ci_systems.Identity, idempotency_key: str) -> typing.Any:
        """Create the build job (or return the existing one); raises Rejected."""


def parse(raw: bytes, model: type[BuildRequest] = BuildRequest) -> BuildRequest:
    """Decode one message; raises ValueError naming the field and the problem."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    return validate(body, model)


def validate(body: typing.Any, model: type[BuildRequest] = BuildRequest) -> BuildRequest:
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        raise ValueError(f"{where}: {err['msg']}") from None


def _refuse(cause: str, reason: str) -> failures.Poison:
    RECEIVED.labels("kafka", cause).inc()
    return failures.Poison(cause, reason)


async def verify(raw: bytes, gateway: Gateway, *, max_age: float, now: float | None = None) -> tuple[SignedBuildRequest, ci_systems.Identity, str]:
    """The verified request, its CI system and its signature; raises Poison (the cause is the outcome label)."""
    try:
        body = signing.peek(raw)
    except (signing.SignatureError, RecursionError):
        raise _refuse("invalid", "not a JSON object") from None
    sig, name = body.get("sig"), body.get("ci_system")
    if not isinstance(sig, str) or not sig:
        raise _refuse("unsigned", "unsigned: no sig; sign the message with your CI system's key (docs/ci.md)")
    if not isinstance(name, str) or not name:
        raise _refuse("unsigned", "ci_system: missing; name the CI system whose key signed the message")
    identity = await gateway.system(name[:40])
    if identity is None:
        raise _refuse("unknown_system", f"ci_system: no CI system named {name[:40]!r}")
    try:
        verified = signing.verify(raw, identity.key)
    except signing.SignatureError:
        raise _refuse("bad_signature", f"sig: not signed with CI system {identity.name!r}'s key") from None
    try:
        request = typing.cast(SignedBuildRequest, validate(verified, SignedBuildRequest))
    except ValueError as exc:
        raise _refuse("invalid", str(exc)) from None
    age = (time.time() if now is None else now) - request.issued_at
    if abs(age) > max_age:
        raise _refuse("stale", f"issued_at: {age:.0f} s old, over ci.max_age ({max_age:.0f} s); sign a fresh message")
    return request, identity, sig


async def handle(record: typing.Any, gateway: Gateway, *, max_age: float = 3600.0) -> str:
    """Process one Kafka record; returns the outcome label, or raises Poison (dead-lettered by the loop)."""
    request, identity, sig = await verify(record.value, gateway, max_age=max_age)
    # Per system, so one system cannot take another's keys; a replayed message has the same signature.
    key = f"ci:{identity.name}:{request.idempotency_key}" if request.idempotency_key else f"ci:{identity.name}:sig:{sig[:32]}"
    try:
        await gateway.submit(request, identity, key)
    except Rejected as exc:
        raise _refuse(exc.cause, f"image {request.image!r}: {exc}") from None
    RECEIVED.labels("kafka", "accepted").inc()
    return "accepted"


class DatabaseGateway:
    """CI systems and builds from PostgreSQL, through the one build path (controlplane/services/images.py)."""

    def __init__(self, sessions: sa_asyncio.async_sessionmaker, settings: cp_settings.Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def system(self, name: str) -> ci_systems.Identity | None:
        async with self._sessions() as session:
            return await ci_systems.identity(session, name)

    async def submit(self, request: SignedBuildRequest, identity: ci_systems.Identity, idempotency_key: str) -> typing.Any:
        async with self._sessions.begin() as session:
            if not await session.scalar(sa.select(sa.exists().where(models.Image.name == request.image))):
                raise Rejected(f"no registered image named {request.image!r}")
            try:
                image = await image_service.named_for_ci(session, request.image, identity.allows)
            except errors.Conflict as exc:
                raise Rejected(exc.message, cause="not_allowed") from None
            if image is None:
                raise Rejected(f"CI system {identity.name!r} may not build it (see its images and owners)", cause="not_allowed")
            owner = await session.get(models.User, image.owner_id)
            principal = access.Principal(user_id=owner.id, name=owner.name, role=owner.role) if owner else None
            made = await image_service.request_builds(
                session,
                image,
                self._settings,
                user=principal,
                source=models.JobSource.CI,
                git_ref=request.git_ref,
                idempotency_key=idempotency_key,
            )
            attributed = f"{identity.requested_by} ({request.requested_by})" if request.requested_by else identity.requested_by
            for job in made:
                if job.requested_by is None:  # a new job, not the one a retry with the same key made
                    job.requested_by = attributed
            return made


async def run(settings: cp_settings.Settings, gateway: Gateway, *, stopping: asyncio.Event, progress: consuming.Progress | None = None) -> None:
    names = topics.Topics(settings.kafka.topic_prefix)

    async def one(record: typing.Any) -> None:
        await handle(record, gateway, max_age=settings.ci.max_age)

    # A database outage must not drop builds: the loop retries infrastructure errors, dead-letters the rest.
    await consuming.consume(
        settings.kafka,
        names.ci_builds,
        group_id=f"{names.controlplane_group}.ci",
        client_id="a4c-ci",
        name="ci",
        handle=one,
        stopping=stopping,
        max_records=100,
        max_record_bytes=min(MAX_MESSAGE_BYTES, settings.consumers.max_message_bytes),
        progress=progress,
    )
