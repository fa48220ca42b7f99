"""Update and delete registered images; the decisions are in controlplane/domain/image_life.py.

Only the owner or an admin may change an image: another user's private image
is 404, a shared one 403 (controlplane/services/images.py, require_owner).
An update changes what the next build builds; copies already built on hosts
stay until then. A delete is refused (409) while live workspaces use the
image or a build of it is in flight; otherwise its schedules and the record
of where it was built go with it, and its jobs keep their image name.
"""

from __future__ import annotations

import typing
import uuid

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane.db import models
from controlplane.domain import image_life
from controlplane.services import access, images

Session = sa_asyncio.AsyncSession
_SOURCE_FIELDS = ("dockerfile", "git_url", "git_ref", "git_path")


async def update_image(session: Session, principal: access.Principal, image_id: uuid.UUID, change: typing.Mapping[str, typing.Any]) -> models.Image:
    """Apply ``change`` (only the fields given): source fields, ``build_args`` (replaced whole), ``shared``."""
    image = images.require_owner(principal, await _locked(session, principal, image_id))
    current = image_life.Source(image.dockerfile, image.git_url, image.git_ref, image.git_path)
    try:
        source = image_life.updated_source(current, {k: v for k, v in change.items() if k in _SOURCE_FIELDS})
    except image_life.Unchangeable as exc:
        raise errors.Invalid.field(exc.field, str(exc)) from None
    if change.get("shared") and not image.shared:
        clash = await images.name_clash(session, image.owner_id, image.name, shared=True, other_than=image.id)
        if clash is not None:
            raise errors.Conflict(clash, code="name_taken")
    image.dockerfile, image.git_url, image.git_ref, image.git_path = source.dockerfile, source.git_url, source.git_ref, source.git_path
    if "build_args" in change:
        image.build_args = dict(change["build_args"])
    if "shared" in change:
        image.shared = bool(change["shared"])
    image.updated_at = sa.func.now()
    try:
        await session.flush()
    except sa_exc.IntegrityError:
        raise errors.Conflict(f"a shared image named {image.name!r} already exists", code="name_taken") from None
    await session.refresh(image)
    return image


async def delete_image(session: Session, principal: access.Principal, image_id: uuid.UUID) -> None:
    image = images.require_owner(principal, await _locked(session, principal, image_id))
    users = (
        await session.execute(
            sa.select(models.Workspace.name, models.Workspace.owner_id)
            .where(models.Workspace.image_id == image.id, models.Workspace.deleted_at.is_(None))
            .order_by(models.Workspace.name)
        )
    ).all()
    visible = [r.name for r in users if principal.is_admin or r.owner_id == principal.user_id]
    builds = (
        await session.scalars(
            sa.select(models.Job.id)
            .where(
                models.Job.image_id == image.id,
                models.Job.kind == models.JobKind.IMAGE_BUILD,
                models.Job.status.in_([s for s in models.JobStatus if not s.final]),
            )
            .order_by(models.Job.created_at)
        )
    ).all()
    refusal = image_life.deletion_refusal(visible, len(users) - len(visible), [str(b) for b in builds])
    if refusal is not None:
        raise errors.Conflict(f"image {image.name!r} cannot be deleted: {refusal}", code="in_use")
    # Deleted workspaces keep their row (and image_ref) but let go of the image.
    await session.execute(sa.update(models.Workspace).where(models.Workspace.image_id == image.id).values(image_id=None))
    await session.delete(image)
    await session.flush()


async def _locked(session: Session, principal: access.Principal, image_id: uuid.UUID) -> models.Image:
    """The image, visible to the caller, locked against a concurrent build request or workspace create."""
    stmt = sa.select(models.Image).where(models.Image.id == image_id, access.images_visible(principal)).with_for_update()
    image = (await session.scalars(stmt)).first()
    if image is None:
        raise errors.NotFound("no such image")
    return image
