"""CI-triggered image builds: the ``<prefix>.ci-builds`` topic (the seed's "A4C Consumer").

A CI system publishes a JSON message per build it wants::

    {"image": "base", "git_ref": "main", "idempotency_key": "jenkins-1234", "requested_by": "ci-bot"}

``image`` names a registered image; ``git_ref`` optionally overrides its ref
for this build; ``idempotency_key`` (optional) makes a retried publish create
nothing new — without one, the message's topic/partition/offset is the key, so
a replay after a crash cannot build twice either.

One model, :class:`BuildRequest`, validates the topic's messages and the
authenticated HTTP webhook's bodies (``POST /v1/ci/builds``, which subclasses
it), so both refuse the same things: a NUL or other control character, an
over-long value. A message that cannot become a build (not JSON, invalid, an
unknown image) is dead-lettered with the reason and counted by
:func:`shared.consuming.consume`; the next message is processed: one bad
producer must not stop everybody's builds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import typing

import prometheus_client
import pydantic

from controlplane import settings as cp_settings
from controlplane.api.schemas import common
from controlplane.api.schemas import images as image_schemas
from shared import consuming, topics
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


class Rejected(Exception):
    """The request cannot become a build (unknown image, bad ref…)."""


Submit = typing.Callable[[BuildRequest, str, str], typing.Awaitable[typing.Any]]
"""``submit(request, source, idempotency_key)`` creates the build job (or returns the existing one)."""


def parse(raw: bytes) -> BuildRequest:
    """Decode one message; raises ValueError naming the field and the problem."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    try:
        return BuildRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        raise ValueError(f"{where}: {err['msg']}") from None


async def handle(record: typing.Any, submit: Submit) -> str:
    """Process one Kafka record; returns the outcome label, or raises Poison (dead-lettered by the loop)."""
    try:
        request = parse(record.value)
    except ValueError as exc:
        RECEIVED.labels("kafka", "malformed").inc()
        raise failures.Poison("invalid", str(exc)) from None
    key = f"ci:{request.idempotency_key}" if request.idempotency_key else f"ci:{record.topic}:{record.partition}:{record.offset}"
    try:
        await submit(request, "ci", key)
    except Rejected as exc:
        RECEIVED.labels("kafka", "rejected").inc()
        raise failures.Poison("rejected", f"image {request.image!r}: {exc}") from None
    RECEIVED.labels("kafka", "accepted").inc()
    return "accepted"


async def run(settings: cp_settings.Settings, submit: Submit, *, stopping: asyncio.Event, progress: consuming.Progress | None = None) -> None:
    names = topics.Topics(settings.kafka.topic_prefix)

    async def one(record: typing.Any) -> None:
        await handle(record, submit)

    # A database outage must not drop builds: the loop retries infrastructure errors, dead-letters the rest.
    await consuming.consume(
        settings.kafka, names.ci_builds, group_id=f"{names.controlplane_group}.ci", client_id="a4c-ci", name="ci", handle=one,
        stopping=stopping, max_records=100, max_record_bytes=min(MAX_MESSAGE_BYTES, settings.consumers.max_message_bytes), progress=progress,
    )
