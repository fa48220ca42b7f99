"""``Idempotency-Key`` on POST/DELETE: a retry gets the original answer and creates nothing new, on any instance.

The key is *claimed first*, inside the request's own transaction, with
``INSERT … ON CONFLICT DO NOTHING``; the response is recorded in the same
transaction just before it commits. So:

* two concurrent retries cannot both run: PostgreSQL makes the second INSERT
  wait on the first's uncommitted row, then it sees the committed record and
  replays it (or, if the first rolled back, claims the key itself);
* a request that fails (any error) rolls back its claim with its changes, so
  the key stays free and a retry runs for real — nothing was created;
* a crash between the change and the record is impossible: they commit together.

The same key with a different method, path or body is refused (422). A
response that carried a secret (a new token, an enrolment key) is never
stored: replaying it answers 409 naming the object that was created, because
the secret was shown once and only its hash exists. Records are purged after
``api.idempotency_retention``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import re
import typing

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID = re.compile(r"^[\x21-\x7e]{1,200}$")

_CLAIM = sa.text(
    """
    INSERT INTO idempotency_keys (principal, key, method, path, request_hash, created_at)
    VALUES (:principal, :key, :method, :path, :hash, now())
    ON CONFLICT (principal, key) DO NOTHING
    RETURNING key
    """
)
_FIND = sa.text("SELECT method, path, request_hash, status, response FROM idempotency_keys WHERE principal = :principal AND key = :key")
_RECORD = sa.text("UPDATE idempotency_keys SET status = :status, response = CAST(:response AS jsonb) WHERE principal = :principal AND key = :key")
_PURGE = sa.text("DELETE FROM idempotency_keys WHERE created_at < :before")


@dataclasses.dataclass(frozen=True)
class Replay:
    status: int
    body: typing.Any


def validate(key: str) -> str:
    if not _VALID.match(key):
        raise errors.Invalid.field(HEADER, "1-200 visible ASCII characters (a UUID is a good choice)")
    return key


def request_hash(method: str, path_qs: str, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (method.encode(), path_qs.encode(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


async def claim(session: sa_asyncio.AsyncSession, *, principal: str, key: str, method: str, path: str, digest: str) -> Replay | None:
    """None if this request now owns the key (run it); else the recorded answer to replay."""
    params = {"principal": principal, "key": key}
    for _ in range(2):
        claimed = (await session.execute(_CLAIM, {**params, "method": method, "path": path[:1024], "hash": digest})).first()
        if claimed is not None:
            return None
        row = (await session.execute(_FIND, params)).first()
        if row is None:
            continue  # purged between the two statements: claim again
        if row.request_hash != digest:
            raise errors.Invalid(
                f"{HEADER} {key!r} was already used for a different request ({row.method} {row.path})",
                fields=[errors.FieldError(HEADER, "already used for a different request; use a new key")],
                code="idempotency_key_reused",
            )
        stored = row.response or {}
        if stored.get("secret"):
            raise errors.Conflict(
                f"this request already succeeded (created {stored.get('id')}); the secret it returned was shown once "
                "and is not stored: revoke it and make a new one if it was lost",
                code="idempotent_secret",
            )
        return Replay(status=row.status, body=stored.get("body"))
    raise errors.Conflict(f"{HEADER} {key!r} could not be claimed; retry", code="idempotency_busy")


async def record(session: sa_asyncio.AsyncSession, *, principal: str, key: str, status: int, body: typing.Any, secret: bool) -> None:
    if secret:
        stored: dict[str, typing.Any] = {"secret": True, "id": _created_id(body)}
    else:
        stored = {"body": body}
    await session.execute(_RECORD, {"principal": principal, "key": key, "status": status, "response": json.dumps(stored)})


async def purge(session: sa_asyncio.AsyncSession, retention: float) -> int:
    """Forget keys older than ``retention`` seconds; returns how many."""
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=retention)
    result = await session.execute(_PURGE, {"before": before})
    assert isinstance(result, sa.CursorResult)  # a DELETE's result counts its rows
    return result.rowcount or 0


def _created_id(body: typing.Any) -> str | None:
    if isinstance(body, dict):
        for field in ("id", "host_id"):
            if field in body:
                return str(body[field])
    return None
