"""Agent enrolment: admins issue enrolment tokens; an agent trades one for its host id and signing key.

An enrolment creates the host (or re-keys an existing host of the same name,
e.g. a reinstalled server), records who enrolled from where, and counts the
token's use; a revoked, expired or used-up token enrols nothing. The new key
is returned exactly once. Enrolling proves the agent is alive, so it counts as
a heartbeat, and workspaces waiting for room are placed right away.

A token is single-use and expires after an hour unless the admin asks for
more uses or another lifetime (``enrolment.token_max_uses``/``token_ttl``).
Re-keying a host that sent a heartbeat recently (``enrolment.recent_heartbeat``,
by default twice ``reconciler.host_down_after``) would lock a live agent out,
or let a token holder take a live host's identity: it needs ``force`` from an
admin, or ``proof`` that the caller holds the host's current key
(:func:`shared.signing.enrolment_proof`); otherwise 409 ``host_recently_active``.
A re-key NOTIFYs every instance, which drop the old key at once
(controlplane/events/keys.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import hmac
import uuid

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane import settings as cp_settings
from controlplane.db import models
from controlplane.services import access, pagination, placement, secrets, workspaces
from shared import signing

Session = sa_asyncio.AsyncSession


@dataclasses.dataclass(frozen=True)
class IssuedEnrolmentToken:
    row: models.EnrolmentToken
    token: str


@dataclasses.dataclass(frozen=True)
class AgentCapacity:
    cpus: float
    memory_mb: int
    disk_bytes: int


@dataclasses.dataclass(frozen=True)
class Enrolled:
    host: models.Host
    key: str
    created: bool


async def issue_token(
    session: Session,
    principal: access.Principal,
    *,
    description: str = "",
    settings: cp_settings.EnrolmentSettings,
    max_uses: int | None = None,
    expires_in: float | None = None,
) -> IssuedEnrolmentToken:
    """A new token: ``max_uses`` and ``expires_in`` (seconds) default to the settings (one use, one hour)."""
    secret = secrets.new(secrets.ENROLMENT_PREFIX)
    now = datetime.datetime.now(datetime.UTC)
    row = models.EnrolmentToken(
        id=uuid.uuid4(),
        token_hash=secret.hash,
        prefix=secret.prefix,
        description=description,
        created_by=principal.user_id,
        created_at=now,
        expires_at=now + datetime.timedelta(seconds=expires_in or settings.token_ttl),
        max_uses=max_uses or settings.token_max_uses,
        uses=0,
    )
    session.add(row)
    await session.flush()
    return IssuedEnrolmentToken(row, secret.token)


async def list_tokens(session: Session, *, limit: int, cursor: str | None) -> tuple[list[models.EnrolmentToken], str | None]:
    return await pagination.page(session, sa.select(models.EnrolmentToken), models.EnrolmentToken, limit=limit, cursor=cursor)


async def revoke_token(session: Session, token_id: uuid.UUID) -> models.EnrolmentToken:
    row = await session.get(models.EnrolmentToken, token_id, with_for_update=True)
    if row is None:
        raise errors.NotFound("no such enrolment token")
    if row.revoked_at is None:
        row.revoked_at = datetime.datetime.now(datetime.UTC)
        await session.flush()
    return row


async def enrol(
    session: Session,
    settings: cp_settings.Settings,
    *,
    token: str,
    host_name: str,
    labels: dict[str, str],
    capacity: AgentCapacity,
    agent_version: str,
    remote_addr: str = "",
    force: bool = False,
    proof: str | None = None,
) -> Enrolled:
    """Create or re-key the host ``host_name``; ``force`` is for admins only (the view checks who asks)."""
    stmt = sa.select(models.EnrolmentToken).where(models.EnrolmentToken.token_hash == secrets.digest(token)).with_for_update()
    grant = (await session.scalars(stmt)).first()
    now = datetime.datetime.now(datetime.UTC)
    if grant is None:
        raise errors.Unauthorized("unknown enrolment token", code="enrolment_token_unknown")
    if grant.revoked_at is not None:
        raise errors.Unauthorized("this enrolment token was revoked", code="enrolment_token_revoked")
    if grant.expires_at is not None and grant.expires_at <= now:
        raise errors.Unauthorized("this enrolment token has expired", code="enrolment_token_expired")
    if grant.max_uses is not None and grant.uses >= grant.max_uses:
        raise errors.Unauthorized(f"this enrolment token is used up ({grant.uses} of {grant.max_uses} uses)", code="enrolment_token_used_up")
    key = signing.new_key()
    # Placement lock before the host row lock: the order every placing transaction uses.
    await placement.lock(session)
    host_stmt = sa.select(models.Host).where(models.Host.name == host_name).with_for_update(key_share=True)
    host = (await session.scalars(host_stmt)).first()
    created = host is None
    if host is not None and not force:
        _may_rekey(host, settings, now, proof=proof, token=token)
    if host is None:
        host = models.Host(id=uuid.uuid4(), name=host_name, created_at=now)
        session.add(host)
    host.signing_key = key
    host.labels = dict(labels)
    host.agent_version = agent_version
    host.capacity_cpus = decimal.Decimal(str(capacity.cpus))
    host.capacity_memory_mb = capacity.memory_mb
    host.capacity_disk_bytes = capacity.disk_bytes
    host.status = models.HostStatus.ACTIVE
    host.down_since = None
    host.last_heartbeat_at = now
    grant.uses += 1
    # No savepoint: a clash aborts this transaction, and the error rolls it back anyway.
    try:
        await session.flush()
    except sa_exc.IntegrityError:
        raise errors.Conflict(f"host {host_name!r} is being enrolled by another request; retry", code="enrolment_in_progress") from None
    session.add(models.Enrolment(id=uuid.uuid4(), token_id=grant.id, host_id=host.id, remote_addr=remote_addr[:64], created_at=now))
    await session.flush()
    await workspaces.place_pending(session, settings)
    return Enrolled(host, key, created)


def recent_window(settings: cp_settings.Settings) -> float:
    return settings.enrolment.recent_heartbeat or 2 * settings.reconciler.host_down_after


def _may_rekey(host: models.Host, settings: cp_settings.Settings, now: datetime.datetime, *, proof: str | None, token: str) -> None:
    """409 unless the host has been quiet for the window, or the caller proves it holds the host's current key."""
    if proof is not None and hmac.compare_digest(proof, signing.enrolment_proof(host.name, token, host.signing_key)):
        return
    if proof is not None:
        raise errors.Unauthorized(f"proof: not signed with host {host.name!r}'s current key", code="enrolment_proof_invalid")
    window = recent_window(settings)
    if host.last_heartbeat_at is None or (now - host.last_heartbeat_at).total_seconds() >= window:
        return
    age = max(0.0, (now - host.last_heartbeat_at).total_seconds())
    raise errors.Conflict(
        f"host {host.name!r} reported {age:.0f} s ago (within enrolment.recent_heartbeat, {window:.0f} s): re-enrolling would re-key a live "
        "agent; an admin may send force: true with their bearer token, or the agent may send proof signed with its current key",
        code="host_recently_active",
    )
