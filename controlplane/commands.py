"""Issuing a command to an agent: the job transition and its outbox row, in one transaction.

This is the only place that writes ``commands.<host>`` outbox rows, so the
wire format (see :mod:`controlplane.relay`) and the job bookkeeping (status
``dispatched``, attempt count, acknowledgement lease, written by
controlplane/services/jobs.py) cannot drift apart
between the API, the reconciler and the scheduler. Call it inside the
transaction that makes the decision.
"""

from __future__ import annotations

import datetime
import json
import logging
import typing
import uuid

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.services import jobs
from shared import logs, messages

logger = logging.getLogger(__name__)

Conn = sa_asyncio.AsyncConnection | sa_asyncio.AsyncSession


async def issue(
    conn: Conn,
    *,
    job_id: uuid.UUID,
    host_id: uuid.UUID,
    kind: messages.CommandKind,
    payload: pydantic.BaseModel,
    key: str,
    ack_timeout: float,
    reason: str = "",
    deadline: float | None = None,
) -> str:
    """Write the command and mark the (existing) job dispatched. Returns the message id.

    Every attempt gets a new message id (the agent rejects replays by id), the
    job's lease says by when the agent must acknowledge it, and its deadline by
    when it must have finished (``deadline`` seconds; ``None`` keeps the one set).
    A job created and dispatched in one go uses :func:`first_dispatch` and
    :func:`send` instead: one INSERT rather than an INSERT and this UPDATE.
    """
    message_id = await send(conn, host_id=host_id, kind=kind, payload=payload, key=key)
    now = datetime.datetime.now(datetime.UTC)
    await jobs.dispatched(
        conn, job_id, host_id, lease=now + datetime.timedelta(seconds=ack_timeout), reason=reason, deadline_at=_deadline_at(now, deadline, payload)
    )
    return message_id


async def send(conn: Conn, *, host_id: uuid.UUID, kind: messages.CommandKind, payload: pydantic.BaseModel, key: str) -> str:
    """Write one command's outbox row (the relay signs and publishes it). Returns the message id.

    The row carries the request id of the API call being answered, if any, so
    the agent's and the event consumer's lines about the job carry it too
    (docs/operations/logging.md); the job and workspace ids are noted on the
    request's log scope, so its access line names them.
    """
    message_id, row = outbox_row(host_id=host_id, kind=kind, payload=payload, key=key)
    await conn.execute(
        sa.text("INSERT INTO outbox (topic, key, kind, payload) VALUES (:topic, :key, :kind, CAST(:payload AS jsonb))"),
        dict(row, payload=json.dumps(row["payload"])),
    )
    queued(message_id, row)
    return message_id


def outbox_row(*, host_id: uuid.UUID, kind: messages.CommandKind, payload: pydantic.BaseModel, key: str) -> tuple[str, dict[str, typing.Any]]:
    """The message id and outbox row (topic, key, kind, payload) of one command, for :func:`send` or a caller inserting it with other rows.

    Notes the job and workspace ids on the request's log scope; the caller calls :func:`queued` once the row is written.
    """
    message_id = uuid.uuid4().hex
    dumped = payload.model_dump(mode="json")
    job_id, workspace_id = ids_of(dumped)
    logs.note(job_id=job_id, workspace_id=workspace_id)
    body: dict[str, typing.Any] = {"id": message_id, "payload": dumped}
    request_id = logs.request_id()
    if request_id is not None:
        body["request_id"] = request_id
    return message_id, {"topic": f"commands.{host_id}", "key": key, "kind": kind.value, "payload": body}


def queued(message_id: str, row: typing.Mapping[str, typing.Any]) -> None:
    """Log a command's outbox row as written."""
    job_id, workspace_id = ids_of(row["payload"]["payload"])
    logger.info(
        "command queued",
        extra={
            "job_id": job_id,
            "workspace_id": workspace_id,
            "kind": row["kind"],
            "host_id": row["topic"].removeprefix("commands."),
            "command_id": message_id,
        },
    )


def ids_of(data: typing.Mapping[str, typing.Any]) -> tuple[str | None, str | None]:
    """(job id, workspace id) of a command payload's JSON; None where it has none."""
    spec = data.get("spec")
    workspace_id = data.get("workspace_id") or (spec.get("workspace_id") if isinstance(spec, dict) else None)
    return data.get("job_id"), workspace_id


def first_dispatch(*, payload: pydantic.BaseModel, ack_timeout: float, deadline: float | None, now: datetime.datetime) -> dict[str, typing.Any]:
    """The bookkeeping columns of a job inserted already dispatched (attempt 1): what :func:`issue`'s UPDATE sets.

    Pure: the caller inserts the job with these values, status ``dispatched``,
    its host and reason, and calls :func:`send` in the same transaction.
    """
    return {
        "attempts": 1,
        "dispatched_at": now,
        "acknowledged_at": None,
        "lease_expires_at": now + datetime.timedelta(seconds=ack_timeout),
        "next_attempt_at": None,
        "deadline_at": _deadline_at(now, deadline, payload),
    }


def _deadline_at(now: datetime.datetime, deadline: float | None, payload: pydantic.BaseModel) -> datetime.datetime | None:
    if deadline is None:
        return None
    if isinstance(payload, messages.BuildCommand):
        deadline += payload.deadline_s  # a build may run for its own deadline, then report
    return now + datetime.timedelta(seconds=deadline)
