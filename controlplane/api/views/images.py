"""/v1/images: register, list, get, update, delete, build; and their cron schedules."""

from __future__ import annotations

import typing

from controlplane import errors
from controlplane.api import endpoint
from controlplane.api.schemas import images as schemas
from controlplane.api.schemas import jobs as job_schemas
from controlplane.db import models
from controlplane.services import image_edits, images, schedules

routes = endpoint.Routes("images")


def render(image: models.Image) -> schemas.Image:
    return schemas.Image(
        id=image.id,
        name=image.name,
        owner_id=image.owner_id,
        shared=image.shared,
        dockerfile=image.dockerfile,
        git_url=image.git_url,
        git_ref=image.git_ref,
        git_path=image.git_path,
        build_args=image.build_args,
        tag=images.tag_for(image),
        latest_digest=image.latest_digest,
        latest_build_job_id=image.latest_build_job_id,
        latest_built_at=image.latest_built_at,
        created_at=image.created_at,
        updated_at=image.updated_at,
    )


def render_schedule(view: schedules.ScheduleView) -> schemas.Schedule:
    row = view.row
    return schemas.Schedule(
        id=row.id,
        image_id=row.image_id,
        owner_id=row.owner_id,
        cron=row.cron,
        timezone=row.timezone,
        enabled=row.enabled,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        last_job_id=row.last_job_id,
        last_outcome=row.last_outcome or "",
        next_runs=view.next_runs,
        created_at=row.created_at,
    )


def _check_scheme(call: endpoint.Call, git_url: str | None) -> None:
    allowed = call.settings.api.git_url_schemes
    if git_url is not None and schemas.git_scheme(git_url) not in allowed:
        raise errors.Invalid.field(
            "git_url", f"{schemas.git_scheme(git_url)} URLs are not accepted here; use {' or '.join(allowed) or 'an inline dockerfile'}"
        )


@routes.post("/v1/images", body=schemas.ImageCreate, response=schemas.Image, status=201)
async def register_image(call: endpoint.Call) -> schemas.Image:
    """Register an image: an inline Dockerfile, or a git URL + ref + path as the build context.

    Names are yours: another user's private image of the same name is no
    clash. A shared image's name must be unique among shared images (409).
    """
    body: schemas.ImageCreate = call.body
    _check_scheme(call, body.git_url)
    new = images.NewImage(
        name=body.name,
        dockerfile=body.dockerfile,
        git_url=body.git_url,
        git_ref=body.git_ref,
        git_path=body.git_path,
        build_args=dict(body.build_args),
        shared=body.shared,
    )
    return render(await images.register_image(call.session, call.user, new))


@routes.get("/v1/images", query=schemas.ImageQuery, response=schemas.ImagePage)
async def list_images(call: endpoint.Call) -> schemas.ImagePage:
    """List images you own or that are shared, newest first."""
    q: schemas.ImageQuery = call.query
    rows, cursor = await images.list_images(call.session, call.user, limit=call.page_size(), cursor=q.cursor, name=q.name, shared=q.shared)
    return schemas.ImagePage(items=[render(r) for r in rows], next_cursor=cursor)


@routes.get("/v1/images/{image_id}", response=schemas.Image)
async def get_image(call: endpoint.Call) -> schemas.Image:
    """Get one image."""
    return render(await images.get_image(call.session, call.user, call.params["image_id"]))


@routes.patch("/v1/images/{image_id}", body=schemas.ImageUpdate, response=schemas.Image, errors=(403,))
async def update_image(call: endpoint.Call) -> schemas.Image:
    """Change an image's Dockerfile or git context, build args or sharing; the next build uses it.

    Only the owner (or an admin) may: another user's shared image is 403.
    """
    body: schemas.ImageUpdate = call.body
    _check_scheme(call, body.git_url)
    return render(await image_edits.update_image(call.session, call.user, call.params["image_id"], body.change()))


@routes.delete("/v1/images/{image_id}", response=None, status=204, errors=(403,))
async def delete_image(call: endpoint.Call) -> None:
    """Delete an image with its schedules (its jobs stay).

    409 (code in_use) while live workspaces use it, naming yours and counting
    other users', or while a build of it is in flight. Only the owner (or an
    admin) may.
    """
    await image_edits.delete_image(call.session, call.user, call.params["image_id"])


@routes.post("/v1/images/{image_id}/builds", response=job_schemas.JobList, status=202, errors=(403,))
async def build_image(call: endpoint.Call) -> job_schemas.JobList:
    """Build the image now: one build job per active host (images are built where they run).

    409 if no host is active. Only the owner (or an admin) may build.
    """
    image = await images.get_owned_image(call.session, call.user, call.params["image_id"])
    made = await images.request_builds(call.session, image, call.settings, user=call.user)
    return job_schemas.JobList(jobs=[job_schemas.Job.model_validate(j) for j in made])


@routes.post("/v1/images/{image_id}/schedules", body=schemas.ScheduleCreate, response=schemas.Schedule, status=201, errors=(403,))
async def create_schedule(call: endpoint.Call) -> schemas.Schedule:
    """Schedule rebuilds with a cron expression in a time zone; the answer shows the next 5 runs."""
    body: schemas.ScheduleCreate = call.body
    view = await schedules.create_schedule(
        call.session, call.user, call.params["image_id"], expression=body.cron, timezone=body.timezone, enabled=body.enabled
    )
    return render_schedule(view)


@routes.get("/v1/images/{image_id}/schedules", response=schemas.ScheduleList)
async def list_schedules(call: endpoint.Call) -> schemas.ScheduleList:
    """List an image's schedules with their next run times."""
    views = await schedules.list_schedules(call.session, call.user, call.params["image_id"])
    return schemas.ScheduleList(items=[render_schedule(v) for v in views])


@routes.get("/v1/images/{image_id}/schedules/{schedule_id}", response=schemas.Schedule)
async def get_schedule(call: endpoint.Call) -> schemas.Schedule:
    """Get one schedule with its next run times."""
    return render_schedule(await schedules.get_schedule(call.session, call.user, call.params["image_id"], call.params["schedule_id"]))


@routes.patch("/v1/images/{image_id}/schedules/{schedule_id}", body=schemas.ScheduleUpdate, response=schemas.Schedule, errors=(403,))
async def update_schedule(call: endpoint.Call) -> schemas.Schedule:
    """Switch a schedule off (``enabled: false``) or on again, or change its cron expression or time zone."""
    body: schemas.ScheduleUpdate = call.body
    change: dict[str, typing.Any] = {name: getattr(body, name) for name in ("cron", "timezone", "enabled") if name in body.model_fields_set}
    view = await schedules.update_schedule(call.session, call.user, call.params["image_id"], call.params["schedule_id"], change)
    return render_schedule(view)


@routes.delete("/v1/images/{image_id}/schedules/{schedule_id}", response=None, status=204, errors=(403,))
async def delete_schedule(call: endpoint.Call) -> None:
    """Delete a schedule (builds already started are not affected)."""
    await schedules.delete_schedule(call.session, call.user, call.params["image_id"], call.params["schedule_id"])
