"""Images: register (inline Dockerfile or git context), read, and request builds.

Builds are per host (nothing is pushed to a registry): a build request makes
one ``image_build`` job per *active* host (cordoned and draining hosts too —
their existing workspaces may be recreated there), each carrying a signed
build command to that host. A workspace may therefore land on any host and
find its image there. With no active host the request is refused (409): there
is nowhere to build, and the next enrolment does not build retroactively.
"""

from __future__ import annotations

import dataclasses
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import commands, errors
from controlplane import settings as cp_settings
from controlplane.db import models
from controlplane.services import access, jobs, pagination
from shared import messages

Session = sa_asyncio.AsyncSession


@dataclasses.dataclass(frozen=True)
class NewImage:
    name: str
    dockerfile: str | None = None
    git_url: str | None = None
    git_ref: str | None = None
    git_path: str | None = None
    build_args: dict[str, str] = dataclasses.field(default_factory=dict)
    shared: bool = False


def tag_for(image: models.Image) -> str:
    """The Docker tag agents build an image under, and workspaces run."""
    return f"a4c/{image.name}:latest"


async def register_image(session: Session, principal: access.Principal, new: NewImage) -> models.Image:
    if (new.dockerfile is None) == (new.git_url is None):
        raise errors.Invalid.field("dockerfile", "give exactly one of dockerfile or git_url")
    image = models.Image(
        id=uuid.uuid4(),
        name=new.name,
        owner_id=principal.user_id,
        shared=new.shared,
        dockerfile=new.dockerfile,
        git_url=new.git_url,
        git_ref=(new.git_ref or "HEAD") if new.git_url else None,
        git_path=(new.git_path or ".") if new.git_url else None,
        build_args=dict(new.build_args),
    )
    session.add(image)
    try:
        async with session.begin_nested():
            await session.flush()
    except sa_exc.IntegrityError:
        raise errors.Conflict(f"an image named {new.name!r} already exists", code="name_taken") from None
    return image


async def get_image(session: Session, principal: access.Principal, image_id: uuid.UUID) -> models.Image:
    stmt = sa.select(models.Image).where(models.Image.id == image_id, access.images_visible(principal))
    image = (await session.scalars(stmt)).first()
    if image is None:
        raise errors.NotFound("no such image")
    return image


async def get_owned_image(session: Session, principal: access.Principal, image_id: uuid.UUID) -> models.Image:
    """An image the caller may change (build, schedule): their own, or any for an admin.

    A shared image of somebody else is visible, so refusing it is 403, not 404.
    """
    image = await get_image(session, principal, image_id)
    if not principal.is_admin and image.owner_id != principal.user_id:
        raise errors.Forbidden("only the image's owner (or an admin) can build or schedule it")
    return image


async def find_visible_by_name(session: Session, principal: access.Principal, name: str) -> models.Image | None:
    stmt = sa.select(models.Image).where(models.Image.name == name, access.images_visible(principal))
    return (await session.scalars(stmt)).first()


async def list_images(
    session: Session, principal: access.Principal, *, limit: int, cursor: str | None, name: str | None = None, shared: bool | None = None
) -> tuple[list[models.Image], str | None]:
    stmt = sa.select(models.Image).where(access.images_visible(principal))
    if name is not None:
        stmt = stmt.where(models.Image.name == name)
    if shared is not None:
        stmt = stmt.where(models.Image.shared.is_(shared))
    return await pagination.page(session, stmt, models.Image, limit=limit, cursor=cursor)


async def request_builds(
    session: Session,
    image: models.Image,
    settings: cp_settings.Settings,
    *,
    user: access.Principal | None,
    source: models.JobSource = models.JobSource.API,
    git_ref: str | None = None,
    idempotency_key: str | None = None,
) -> list[models.Job]:
    """One build job (and signed command) per active host; the API, the scheduler and CI all come here.

    With ``idempotency_key`` the jobs are keyed ``<key>/<host id>``: a repeat
    with the same key returns the jobs the first request made.
    """
    if idempotency_key is not None:
        existing = await _jobs_with_key(session, idempotency_key)
        if existing:
            return existing
    hosts = (
        await session.scalars(
            sa.select(models.Host).where(models.Host.status == models.HostStatus.ACTIVE).order_by(models.Host.name)
        )
    ).all()
    if not hosts:
        raise errors.Conflict("no active host to build on; enrol an agent first", code="no_hosts")
    context = messages.BuildContext(
        dockerfile=image.dockerfile,
        git_url=image.git_url,
        git_ref=git_ref or image.git_ref or "HEAD",
        git_path=image.git_path or ".",
    )
    made: list[models.Job] = []
    for host in hosts:
        job_id = uuid.uuid4()
        command = messages.BuildCommand(
            job_id=str(job_id),
            image_id=str(image.id),
            tag=tag_for(image),
            context=context,
            build_args={k: str(v) for k, v in image.build_args.items()},
            deadline_s=settings.api.build_deadline,
        )
        key = f"{idempotency_key}/{host.id}" if idempotency_key is not None else None
        try:
            async with session.begin_nested():
                job = await jobs.new_job(
                    session, models.JobKind.IMAGE_BUILD, job_id=job_id, user=user, source=source, host=host, image=image,
                    payload=command.model_dump(mode="json"), idempotency_key=key,
                    max_attempts=settings.reconciler.job_max_attempts,
                )
        except sa_exc.IntegrityError:
            # A concurrent request with the same key won the race: return its jobs.
            return await _jobs_with_key(session, typing.cast(str, idempotency_key))
        await commands.issue(
            session, job_id=job.id, host_id=host.id, kind=messages.CommandKind.IMAGE_BUILD, payload=command,
            key=str(image.id), ack_timeout=settings.reconciler.job_ack_timeout,
        )
        await session.refresh(job)
        made.append(job)
    return made


async def _jobs_with_key(session: Session, key: str) -> list[models.Job]:
    pattern = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
    stmt = sa.select(models.Job).where(models.Job.idempotency_key.like(pattern, escape="\\")).order_by(models.Job.host_name)
    return list((await session.scalars(stmt)).all())
