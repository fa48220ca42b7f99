"""/v1/ci/builds: the authenticated webhook CI systems call to build an image.

Same body and same path into the build service as a message on the
``<prefix>.ci-builds`` topic (:mod:`controlplane.ci`). The caller's token must
own the image (or be an admin's): as with ``POST /v1/images/{id}/builds``, a
shared image of somebody else is visible (403) but not theirs to rebuild —
with ``git_ref`` they could otherwise replace what everybody runs. ``idempotency_key`` in the body (or
the ``Idempotency-Key`` header) makes a retried call create nothing new.
"""

from __future__ import annotations

import pydantic

from controlplane import errors
from controlplane.api import endpoint
from controlplane.api.schemas import common
from controlplane.api.schemas import images as image_schemas
from controlplane.api.schemas import jobs as job_schemas
from controlplane.db import models
from controlplane.services import images

routes = endpoint.Routes("ci")


class CiBuild(common.Body):
    image: str = pydantic.Field(max_length=128, pattern=image_schemas.IMAGE_NAME, description="Name of a registered image you may use.")
    git_ref: str | None = pydantic.Field(default=None, max_length=255, description="Overrides the image's git ref for this build.")
    idempotency_key: str | None = pydantic.Field(default=None, min_length=1, max_length=150, description="A retry with the same key builds nothing new.")
    requested_by: str | None = pydantic.Field(default=None, max_length=100, description="Free text, e.g. the CI job URL.")


@routes.post("/v1/ci/builds", body=CiBuild, response=job_schemas.JobList, status=202, errors=(403, 404))
async def ci_build(call: endpoint.Call) -> job_schemas.JobList:
    """Build a registered image on behalf of a CI system (one job)."""
    body: CiBuild = call.body
    image = await images.find_visible_by_name(call.session, call.user, body.image)
    if image is None:
        raise errors.NotFound(f"no registered image named {body.image!r} that you may use")
    images.require_owner(call.user, image)
    key = f"ci:{body.idempotency_key}" if body.idempotency_key else None
    made = await images.request_builds(
        call.session, image, call.settings, user=call.user, source=models.JobSource.WEBHOOK, git_ref=body.git_ref, idempotency_key=key
    )
    return job_schemas.JobList(jobs=[job_schemas.Job.model_validate(j) for j in made])
