"""/v1/ci/builds: the authenticated webhook CI systems call to build an image; /v1/ci-systems (admin): the identities that sign the topic's messages.

Same body and same path into the build service as a message on the
``<prefix>.ci-builds`` topic (:mod:`controlplane.ci`). The caller's token must
own the image (or be an admin's): as with ``POST /v1/images/{id}/builds``, a
shared image of somebody else is visible (403) but not theirs to rebuild —
with ``git_ref`` they could otherwise replace what everybody runs. ``idempotency_key`` in the body (or
the ``Idempotency-Key`` header) makes a retried call create nothing new.
A NUL or other control character in a field answers 422 naming it.
Its idempotency keys are the caller's own (``webhook:<user id>:<key>``), so
no caller can take a key a CI system's messages use (``ci:<system>:<key>``).
"""

from __future__ import annotations

from controlplane import ci, errors
from controlplane.api import endpoint
from controlplane.api.schemas import ci as schemas
from controlplane.api.schemas import common
from controlplane.api.schemas import jobs as job_schemas
from controlplane.db import models
from controlplane.services import ci_systems, images

routes = endpoint.Routes("ci")


class CiBuild(ci.BuildRequest):
    """The same body as a message on the ``<prefix>.ci-builds`` topic, validated by the same model."""


@routes.post("/v1/ci/builds", body=CiBuild, response=job_schemas.JobList, status=202, errors=(403, 404))
async def ci_build(call: endpoint.Call) -> job_schemas.JobList:
    """Build a registered image on behalf of a CI system (one job)."""
    body: CiBuild = call.body
    image = await images.find_visible_by_name(call.session, call.user, body.image)
    if image is None:
        raise errors.NotFound(f"no registered image named {body.image!r} that you may use")
    images.require_owner(call.user, image)
    key = f"webhook:{call.user.user_id}:{body.idempotency_key}" if body.idempotency_key else None
    made = await images.request_builds(
        call.session, image, call.settings, user=call.user, source=models.JobSource.WEBHOOK, git_ref=body.git_ref, idempotency_key=key
    )
    return job_schemas.JobList(jobs=[job_schemas.Job.model_validate(j) for j in made])


@routes.post("/v1/ci-systems", body=schemas.CiSystemCreate, response=schemas.CiSystemIssued, status=201, auth="admin", secret=True)
async def create_ci_system(call: endpoint.Call) -> schemas.CiSystemIssued:
    """Create a CI system: its name, what it may build, and its signing key (shown once).

    Its messages on ``<prefix>.ci-builds`` must be signed with the key (docs/ci.md);
    the jobs they make say ``requested_by: ci:<name>``.
    """
    body: schemas.CiSystemCreate = call.body
    row, key = await ci_systems.create(
        call.session, call.user, name=body.name, description=body.description, images=list(body.images), owners=list(body.owners)
    )
    return schemas.CiSystemIssued.model_validate({**schemas.CiSystem.model_validate(row).model_dump(), "key": key})


@routes.get("/v1/ci-systems", query=common.ListQuery, response=schemas.CiSystemPage, auth="admin")
async def list_ci_systems(call: endpoint.Call) -> schemas.CiSystemPage:
    """List CI systems and what each may build (never their keys)."""
    rows, cursor = await ci_systems.list_systems(call.session, limit=call.page_size(), cursor=call.query.cursor)
    return schemas.CiSystemPage(items=[schemas.CiSystem.model_validate(r) for r in rows], next_cursor=cursor)


@routes.delete("/v1/ci-systems/{ci_system_id}", response=schemas.CiSystem, auth="admin")
async def delete_ci_system(call: endpoint.Call) -> schemas.CiSystem:
    """Delete a CI system: its messages are refused (unknown_system) from the next one on; its jobs stay."""
    return schemas.CiSystem.model_validate(await ci_systems.delete(call.session, call.params["ci_system_id"]))
