"""CI systems: the identities allowed to publish build requests on ``<prefix>.ci-builds`` (docs/ci.md).

An admin creates one per CI system, naming what it may build: images by
name, and/or every image of some users. The answer carries the system's HMAC
key once; like a host's signing key it is stored usable (it verifies
signatures) and never shown again. Deleting a system makes its messages
``unknown_system`` from the next message on (each message looks it up).
"""

from __future__ import annotations

import dataclasses
import uuid

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane.db import models
from controlplane.services import access, pagination
from shared import signing

Session = sa_asyncio.AsyncSession


@dataclasses.dataclass(frozen=True)
class Identity:
    """What a verified message is attributed to, and what it may build."""

    name: str
    key: str
    images: frozenset[str]
    owners: frozenset[str]

    @property
    def requested_by(self) -> str:
        return f"ci:{self.name}"

    def allows(self, image_name: str, owner_name: str | None) -> bool:
        if image_name in self.images:
            return True
        # Names are per owner (migration 0008): owner/name pins an entry to one user's image.
        return owner_name is not None and (owner_name in self.owners or f"{owner_name}/{image_name}" in self.images)


async def create(
    session: Session, principal: access.Principal, *, name: str, description: str, images: list[str], owners: list[str]
) -> tuple[models.CiSystem, str]:
    # Names, matched when a message arrives (like images, users may come later); no names: it may build nothing.
    wanted = sorted(set(owners))
    key = signing.new_key()
    row = models.CiSystem(
        id=uuid.uuid4(),
        name=name,
        description=description,
        signing_key=key,
        images=sorted(set(images)),
        owners=wanted,
        created_by=principal.user_id,
    )
    session.add(row)
    try:
        await session.flush()
    except sa_exc.IntegrityError:
        raise errors.Conflict(f"a CI system named {name!r} already exists", code="name_taken") from None
    return row, key


async def list_systems(session: Session, *, limit: int, cursor: str | None) -> tuple[list[models.CiSystem], str | None]:
    return await pagination.page(session, sa.select(models.CiSystem), models.CiSystem, limit=limit, cursor=cursor)


async def delete(session: Session, system_id: uuid.UUID) -> models.CiSystem:
    row = await session.get(models.CiSystem, system_id)
    if row is None:
        raise errors.NotFound("no such CI system")
    await session.delete(row)
    await session.flush()
    return row


async def identity(session: Session, name: str) -> Identity | None:
    row = (await session.scalars(sa.select(models.CiSystem).where(models.CiSystem.name == name))).first()
    if row is None:
        return None
    return Identity(row.name, row.signing_key, frozenset(row.images), frozenset(row.owners))
