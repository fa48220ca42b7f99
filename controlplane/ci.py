"""CI-triggered image builds: the ``<prefix>.ci-builds`` topic (the seed's "A4C Consumer").

A CI system publishes a JSON message per build it wants::

    {"image": "base", "git_ref": "main", "idempotency_key": "jenkins-1234", "requested_by": "ci-bot"}

``image`` names a registered image; ``git_ref`` optionally overrides its ref
for this build; ``idempotency_key`` (optional) makes a retried publish create
nothing new — without one, the message's topic/partition/offset is the key, so
a replay after a crash cannot build twice either.

A malformed message (not JSON, unknown field, unknown image) is logged with
the reason, counted, and skipped: one bad producer must not stop everybody's
builds. The authenticated HTTP webhook (``POST /v1/ci/builds``) takes the same
body and goes through the same :func:`submit` path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import typing

import prometheus_client
import pydantic
import sqlalchemy as sa

from controlplane import settings as cp_settings
from shared import kafka, topics

logger = logging.getLogger(__name__)

RECEIVED = prometheus_client.Counter("a4c_ci_builds_total", "CI build requests", ["source", "outcome"])


class BuildRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    image: str = pydantic.Field(min_length=1, max_length=128, description="Name of a registered image.")
    git_ref: str | None = pydantic.Field(default=None, max_length=255, description="Overrides the image's git ref for this build.")
    idempotency_key: str | None = pydantic.Field(default=None, min_length=1, max_length=150)
    requested_by: str | None = pydantic.Field(default=None, max_length=100, description="Free text shown on the job.")


class Rejected(Exception):
    """The request cannot become a build (unknown image, bad ref…)."""


Submit = typing.Callable[[BuildRequest, str, str], typing.Awaitable[typing.Any]]
"""``submit(request, source, idempotency_key)`` creates the build job (or returns the existing one)."""


def parse(raw: bytes) -> BuildRequest:
    """Decode one message; raises ValueError naming the problem."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    try:
        return BuildRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        raise ValueError(f"{where}: {err['msg']}") from None


async def handle(record: typing.Any, submit: Submit) -> str:
    """Process one Kafka record; returns the outcome label (for tests and metrics)."""
    try:
        request = parse(record.value)
    except ValueError as exc:
        logger.warning("skipping malformed CI build message at %s[%s]@%s: %s", record.topic, record.partition, record.offset, exc)
        RECEIVED.labels("kafka", "malformed").inc()
        return "malformed"
    key = f"ci:{request.idempotency_key}" if request.idempotency_key else f"ci:{record.topic}:{record.partition}:{record.offset}"
    try:
        await submit(request, "ci", key)
    except Rejected as exc:
        logger.warning("skipping CI build request for %r: %s", request.image, exc)
        RECEIVED.labels("kafka", "rejected").inc()
        return "rejected"
    RECEIVED.labels("kafka", "accepted").inc()
    return "accepted"


async def run(settings: cp_settings.Settings, submit: Submit, *, stopping: asyncio.Event) -> None:
    names = topics.Topics(settings.kafka.topic_prefix)

    async def one(record: typing.Any) -> None:
        await handle(record, submit)

    # A database outage must not drop builds: kafka.consume retries the record.
    await kafka.consume(
        settings.kafka, names.ci_builds, group_id=f"{names.controlplane_group}.ci", client_id="a4c-ci", handle=one,
        stopping=stopping, retryable=(OSError, sa.exc.OperationalError, sa.exc.InterfaceError), max_records=100,
    )
