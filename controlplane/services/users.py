"""Users and their API tokens: create, issue, revoke, authenticate, bootstrap the first admin."""

from __future__ import annotations

import dataclasses
import datetime
import re
import uuid

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane.db import models
from controlplane.services import access, pagination, secrets

Session = sa_asyncio.AsyncSession

# Mirrors the users_name_format check constraint, so a bad name is a 422 naming
# the field rather than a constraint violation.
USER_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")

# One round trip: find the live token and its user, and note its use at most
# once a minute (so authenticating is not a write on every request).
_AUTHENTICATE = sa.text(
    """
    WITH found AS (
        SELECT t.id AS token_id, u.id AS user_id, u.name, u.role::text AS role
        FROM api_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_hash = :hash AND t.revoked_at IS NULL
          AND (t.expires_at IS NULL OR t.expires_at > now()) AND NOT u.disabled
    ), touched AS (
        UPDATE api_tokens SET last_used_at = now()
        WHERE id = (SELECT token_id FROM found)
          AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
    )
    SELECT token_id, user_id, name, role FROM found
    """
)


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    row: models.ApiToken
    token: str


async def authenticate(session: Session, token: str) -> access.Principal | None:
    """The principal a bearer token stands for, or None if it is unknown, revoked, expired or its user disabled."""
    row = (await session.execute(_AUTHENTICATE, {"hash": secrets.digest(token)})).first()
    if row is None:
        return None
    return access.Principal(user_id=row.user_id, name=row.name, role=models.Role(row.role), token_id=row.token_id)


async def create_user(session: Session, name: str, role: models.Role = models.Role.USER) -> models.User:
    if not USER_NAME.match(name):
        raise errors.Invalid.field("name", "1-64 characters: a lowercase letter, then lowercase letters, digits, '_', '.' or '-'")
    user = models.User(id=uuid.uuid4(), name=name, role=role, disabled=False)
    session.add(user)
    # No savepoint: a clash aborts this transaction, and the error rolls it back anyway.
    try:
        await session.flush()
    except sa_exc.IntegrityError:
        raise errors.Conflict(f"a user named {name!r} already exists", code="name_taken") from None
    return user


async def get_user(session: Session, user_id: uuid.UUID) -> models.User:
    user = await session.get(models.User, user_id)
    if user is None:
        raise errors.NotFound("no such user")
    return user


async def list_users(session: Session, *, limit: int, cursor: str | None) -> tuple[list[models.User], str | None]:
    return await pagination.page(session, sa.select(models.User), models.User, limit=limit, cursor=cursor)


async def issue_token(session: Session, user_id: uuid.UUID, *, name: str = "", ttl_days: int | None = None) -> IssuedToken:
    user = await get_user(session, user_id)
    secret = secrets.new(secrets.API_PREFIX)
    expires = None
    if ttl_days is not None:
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=ttl_days)
    row = models.ApiToken(id=uuid.uuid4(), user_id=user.id, name=name, token_hash=secret.hash, prefix=secret.prefix, expires_at=expires)
    session.add(row)
    await session.flush()
    return IssuedToken(row=row, token=secret.token)


async def list_tokens(session: Session, user_id: uuid.UUID) -> list[models.ApiToken]:
    await get_user(session, user_id)
    stmt = sa.select(models.ApiToken).where(models.ApiToken.user_id == user_id).order_by(models.ApiToken.created_at.desc())
    return list((await session.scalars(stmt)).all())


async def revoke_token(session: Session, token_id: uuid.UUID) -> models.ApiToken:
    """Revoke (idempotent: revoking a revoked token keeps its first revocation time).

    The last live token of an enabled admin cannot be revoked (409): nobody
    could administer the installation any more, ``a4c up`` included.
    """
    admins = await _live_admin_tokens(session)  # first, in id order: two revocations cannot deadlock
    row = await session.get(models.ApiToken, token_id, with_for_update=True)
    if row is None:
        raise errors.NotFound("no such token")
    if row.revoked_at is None and admins == [row.id]:
        raise errors.Conflict(
            "this is the last valid admin token: issue another admin token first (POST /v1/users/{user_id}/tokens), then revoke this one",
            code="last_admin_token",
        )
    if row.revoked_at is None:
        row.revoked_at = datetime.datetime.now(datetime.UTC)
        await session.flush()
    return row


async def _live_admin_tokens(session: Session) -> list[uuid.UUID]:
    """Ids of the live tokens of enabled admins, locked: concurrent revocations take turns, so two cannot each leave the other as the last."""
    stmt = (
        sa.select(models.ApiToken.id)
        .join(models.User, models.User.id == models.ApiToken.user_id)
        .where(
            models.User.role == models.Role.ADMIN,
            sa.not_(models.User.disabled),
            models.ApiToken.revoked_at.is_(None),
            sa.or_(models.ApiToken.expires_at.is_(None), models.ApiToken.expires_at > sa.func.now()),
        )
        .order_by(models.ApiToken.id)
        .with_for_update(of=models.ApiToken)
    )
    return list((await session.scalars(stmt)).all())


async def bootstrap_admin(session: Session, name: str, *, token_name: str = "bootstrap") -> IssuedToken:  # noqa: S107 - a label, not a secret
    """``create-admin``: make the admin (or reuse an existing admin of that name) and issue a token."""
    user = (await session.scalars(sa.select(models.User).where(models.User.name == name))).first()
    if user is None:
        user = await create_user(session, name, models.Role.ADMIN)
    elif user.role is not models.Role.ADMIN:
        raise errors.Conflict(f"user {name!r} exists and is not an admin")
    return await issue_token(session, user.id, name=token_name)
