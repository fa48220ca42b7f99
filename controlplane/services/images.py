"""Images: register (inline Dockerfile or git context), read, and request builds.

A build request (API, cron schedule, CI topic or webhook) is **one**
``image_build`` job on one host: the active host with the fewest builds in
flight (controlplane/domain/build_placement.py). Builds take the agents'
build slots, never workspace CPUs or memory, so reserved workspaces cannot
starve them; "one CI call = one build" holds however large the fleet is.

Builds are per host (nothing is pushed to a registry). When a workspace lands
on a host that has not built its image yet, the workspace's create job waits
(``pending``, reason "waiting for image … to be built on …") and a build on
*that* host is requested through :func:`ensure_built_on` — at most one in
flight per image and host. The reconciler releases the waiting creates once the
build succeeds, and fails them with the build's error if it fails.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import commands, errors
from controlplane import settings as cp_settings
from controlplane.db import models
from controlplane.domain import build_placement
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
    return image.tag


def new_tag(name: str, image_id: uuid.UUID) -> str:
    """A tag no other image has: names are per owner (migration 0008), so the id tells two ``devbox`` apart on one host."""
    return f"a4c/{name}:{image_id.hex}"


async def name_clash(session: Session, owner_id: uuid.UUID, name: str, *, shared: bool, other_than: uuid.UUID | None = None) -> str | None:
    """Why ``name`` cannot be (owner's, maybe shared) — only ever about the owner's own or shared images.

    Another user's private image of that name is no clash, so no answer can reveal it.
    """
    clash = sa.or_(models.Image.owner_id == owner_id, models.Image.shared.is_(True)) if shared else models.Image.owner_id == owner_id
    stmt = sa.select(models.Image.owner_id).where(models.Image.name == name, clash)
    if other_than is not None:
        stmt = stmt.where(models.Image.id != other_than)
    found = (await session.scalars(stmt)).all()
    if owner_id in found:
        return f"you already have an image named {name!r}"
    if found:
        return f"a shared image named {name!r} already exists (shared names are one namespace)"
    return None


async def register_image(session: Session, principal: access.Principal, new: NewImage) -> models.Image:
    if (new.dockerfile is None) == (new.git_url is None):
        raise errors.Invalid.field("dockerfile", "give exactly one of dockerfile or git_url")
    clash = await name_clash(session, principal.user_id, new.name, shared=new.shared)
    if clash is not None:
        raise errors.Conflict(clash, code="name_taken")
    image_id = uuid.uuid4()
    image = models.Image(
        id=image_id,
        tag=new_tag(new.name, image_id),
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
    # No savepoint: a clash aborts this transaction, and the error rolls it back anyway.
    try:
        await session.flush()
    except sa_exc.IntegrityError:
        # A concurrent registration won; both unique keys are about the caller's own or shared names.
        raise errors.Conflict(f"an image named {new.name!r} already exists among yours or the shared ones", code="name_taken") from None
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
    return require_owner(principal, await get_image(session, principal, image_id))


def require_owner(principal: access.Principal, image: models.Image) -> models.Image:
    """``image`` if the caller may change it (build, schedule); 403 for a visible image of somebody else."""
    if not principal.is_admin and image.owner_id != principal.user_id:
        raise errors.Forbidden("only the image's owner (or an admin) can build or schedule it")
    return image


async def find_visible_by_name(session: Session, principal: access.Principal, name: str) -> models.Image | None:
    """What a name means to its caller: their own image of that name, else the shared one (docs/workspaces.md).

    An admin sees every image, so a name only other users' private images
    have resolves for them when exactly one does; several is a 409 telling
    them to use the image's id.
    """
    stmt = sa.select(models.Image).where(models.Image.name == name, access.images_visible(principal))
    found = list((await session.scalars(stmt)).all())
    for preferred in (lambda i: i.owner_id == principal.user_id, lambda i: i.shared):
        for image in found:
            if preferred(image):
                return image
    if len(found) > 1:
        raise errors.Conflict(f"{len(found)} users have a private image named {name!r}, none yours or shared; pick one by id", code="ambiguous")
    return found[0] if found else None


async def named_for_ci(session: Session, name: str, allows: typing.Callable[[str, str | None], bool]) -> models.Image | None:
    """The one image named ``name`` that a CI system may build (``allows(image name, owner name)``).

    Names are per owner (migration 0008): a shared image wins over private ones,
    and several private candidates are refused rather than guessed.
    """
    rows = (
        await session.execute(
            sa.select(models.Image, models.User.name).join(models.User, models.User.id == models.Image.owner_id).where(models.Image.name == name)
        )
    ).all()
    candidates = [image for image, owner in rows if allows(image.name, owner)]
    shared = [image for image in candidates if image.shared]
    if shared:
        return shared[0]
    if len(candidates) > 1:
        raise errors.Conflict(f"{len(candidates)} owners have an image named {name!r} this CI system may build", code="ambiguous")
    return candidates[0] if candidates else None


async def list_images(
    session: Session, principal: access.Principal, *, limit: int, cursor: str | None, name: str | None = None, shared: bool | None = None
) -> tuple[list[models.Image], str | None]:
    stmt = sa.select(models.Image).where(access.images_visible(principal))
    if name is not None:
        stmt = stmt.where(models.Image.name == name)
    if shared is not None:
        stmt = stmt.where(models.Image.shared.is_(shared))
    return await pagination.page(session, stmt, models.Image, limit=limit, cursor=cursor)


_BUILD_HOSTS = sa.text(
    """
    SELECT h.id, h.name, h.status::text AS status, h.cordoned, h.draining, h.last_heartbeat_at, h.disk_used_bytes,
           CASE WHEN h.disk_total_bytes <> 0 THEN h.disk_total_bytes ELSE h.capacity_disk_bytes END AS disk_total,
           coalesce(b.n, 0) AS builds, h.capacity_memory_mb - coalesce(w.memory_mb, 0) AS free_memory
    FROM hosts h
    LEFT JOIN (
        SELECT host_id, count(*) AS n FROM jobs
        WHERE kind = 'image_build' AND status IN ('queued', 'dispatched', 'running') AND host_id IS NOT NULL
        GROUP BY host_id
    ) b ON b.host_id = h.id
    LEFT JOIN (
        SELECT host_id, sum(memory_mb) AS memory_mb FROM workspaces
        WHERE host_id IS NOT NULL AND desired_state <> 'stopped' AND observed_state NOT IN ('deleted', 'failed')
        GROUP BY host_id
    ) w ON w.host_id = h.id
    """
)


async def choose_build_host(session: Session, settings: cp_settings.Settings) -> build_placement.Choice:
    """The host for a new build (controlplane/domain/build_placement.py): never judged on workspace CPUs or memory."""
    rows = (await session.execute(_BUILD_HOSTS)).all()
    hosts = [
        build_placement.BuildHost(
            id=r.id,
            name=r.name,
            status=r.status,
            last_heartbeat=r.last_heartbeat_at,
            builds_in_flight=int(r.builds),
            cordoned=r.cordoned,
            draining=r.draining,
            disk_used_bytes=r.disk_used_bytes,
            disk_total_bytes=int(r.disk_total or 0),
            free_memory_mb=int(r.free_memory),
        )
        for r in rows
    ]
    fresh = datetime.timedelta(seconds=settings.placement.heartbeat_fresh)
    return build_placement.place(hosts, _now(), fresh=fresh)


async def request_builds(
    session: Session,
    image: models.Image,
    settings: cp_settings.Settings,
    *,
    user: access.Principal | None,
    source: models.JobSource = models.JobSource.API,
    git_ref: str | None = None,
    idempotency_key: str | None = None,
    host: models.Host | None = None,
    reason: str = "",
) -> list[models.Job]:
    """One build job (and its signed command); the API, the scheduler and CI all come here.

    ``host`` pins the build (a workspace needs the image there); otherwise the
    least-disk eligible host is chosen. With ``idempotency_key`` a repeat
    returns the job the first request made. Returns a list for API symmetry.
    """
    if idempotency_key is not None:
        existing = await _jobs_with_key(session, idempotency_key)
        if existing:
            return existing
    if host is None:
        choice = await choose_build_host(session, settings)
        reason = reason or choice.reason
        if choice.host is not None:
            host = await session.get(models.Host, choice.host.id)
    context = messages.BuildContext(
        dockerfile=image.dockerfile,
        git_url=image.git_url,
        git_ref=git_ref or image.git_ref or "HEAD",
        git_path=image.git_path or ".",
    )
    job_id = uuid.uuid4()
    command = messages.BuildCommand(
        job_id=str(job_id),
        image_id=str(image.id),
        tag=tag_for(image),
        context=context,
        build_args={k: str(v) for k, v in image.build_args.items()},
        deadline_s=settings.api.build_deadline,
    )
    try:
        async with session.begin_nested():
            job = await jobs.new_job(
                session,
                models.JobKind.IMAGE_BUILD,
                job_id=job_id,
                user=user,
                source=source,
                host=host,
                image=image,
                payload=command.model_dump(mode="json"),
                idempotency_key=idempotency_key,
                reason=reason,
                max_attempts=settings.reconciler.job_max_attempts,
                # No host can build right now: the job waits, saying why, and the
                # reconciler dispatches it when one can (nothing is dropped).
                status=models.JobStatus.QUEUED if host is not None else models.JobStatus.PENDING,
            )
    except sa_exc.IntegrityError:
        # A concurrent request with the same key won the race: return its job.
        return await _jobs_with_key(session, typing.cast(str, idempotency_key))
    if host is None:
        return [job]
    await dispatch_build(session, job, host, settings, reason=reason)
    return [job]


async def dispatch_build(session: Session, job: models.Job, host: models.Host, settings: cp_settings.Settings, *, reason: str) -> None:
    """Send a build job's command to ``host`` (a new job, or a pending one that found a host)."""
    command = messages.BuildCommand.model_validate(job.payload)
    job.host_id, job.host_name = host.id, host.name
    await session.flush()
    await commands.issue(
        session,
        job_id=job.id,
        host_id=host.id,
        kind=messages.CommandKind.IMAGE_BUILD,
        payload=command,
        key=command.image_id,
        ack_timeout=settings.reconciler.job_ack_timeout,
        deadline=settings.reconciler.job_deadline,
        reason=reason,
    )
    await session.refresh(job)


async def built_on(session: Session, image_id: uuid.UUID, host_id: uuid.UUID) -> bool:
    row = await session.execute(
        sa.select(models.HostImage.image_id).where(models.HostImage.image_id == image_id, models.HostImage.host_id == host_id)
    )
    return row.first() is not None


async def ensure_built_on(session: Session, image: models.Image, host: models.Host, settings: cp_settings.Settings) -> models.Job:
    """The build of ``image`` on ``host`` in flight (or a new one): what a waiting workspace waits for."""
    in_flight = (
        await session.scalars(
            sa.select(models.Job)
            .where(
                models.Job.kind == models.JobKind.IMAGE_BUILD,
                models.Job.image_id == image.id,
                models.Job.host_id == host.id,
                models.Job.status.in_((models.JobStatus.QUEUED, models.JobStatus.DISPATCHED, models.JobStatus.RUNNING)),
            )
            .limit(1)
        )
    ).first()
    if in_flight is not None:
        return in_flight
    made = await request_builds(
        session,
        image,
        settings,
        user=None,
        source=models.JobSource.RECONCILER,
        host=host,
        reason=f"a workspace needs {image.name} on {host.name}",
    )
    return made[0]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _jobs_with_key(session: Session, key: str) -> list[models.Job]:
    return list((await session.scalars(sa.select(models.Job).where(models.Job.idempotency_key == key))).all())
