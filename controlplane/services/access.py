"""Who is calling, and which rows they may see.

A user sees their own workspaces, images they own or that are shared, and jobs
about them (theirs, or about their workspaces or images); an admin sees
everything. Every read of a single object goes through these filters, so
another user's object is indistinguishable from a missing one (404, never 403).
"""

from __future__ import annotations

import dataclasses
import uuid

import sqlalchemy as sa

from controlplane import errors
from controlplane.db import models


@dataclasses.dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    name: str
    role: models.Role
    token_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is models.Role.ADMIN

    @property
    def key(self) -> str:
        """Stable identity for idempotency records and rate-limit buckets."""
        return str(self.user_id)


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise errors.Forbidden("this needs the admin role")


def workspaces_visible(principal: Principal) -> sa.ColumnElement[bool]:
    if principal.is_admin:
        return sa.true()
    return models.Workspace.owner_id == principal.user_id


def images_visible(principal: Principal) -> sa.ColumnElement[bool]:
    if principal.is_admin:
        return sa.true()
    return sa.or_(models.Image.owner_id == principal.user_id, models.Image.shared.is_(True))


def images_owned(principal: Principal) -> sa.ColumnElement[bool]:
    if principal.is_admin:
        return sa.true()
    return models.Image.owner_id == principal.user_id


def jobs_visible(principal: Principal) -> sa.ColumnElement[bool]:
    if principal.is_admin:
        return sa.true()
    mine = principal.user_id
    return sa.or_(
        models.Job.user_id == mine,
        models.Job.workspace_id.in_(sa.select(models.Workspace.id).where(models.Workspace.owner_id == mine)),
        models.Job.image_id.in_(sa.select(models.Image.id).where(models.Image.owner_id == mine)),
    )
