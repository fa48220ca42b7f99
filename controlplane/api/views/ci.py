"""/v1/ci/builds: the authenticated webhook CI systems call to build an image.

Same body and same path into the build service as a message on the
``<prefix>.ci-builds`` topic (:mod:`controlplane.ci`). The caller's token must
own the image (or be an admin's): as with ``POST /v1/images/{id}/builds``, a
shared image of somebody else is visible (403) but not theirs to rebuild —
with ``git_ref`` they could otherwise replace what everybody runs. ``idempotency_key`` in the body (or
the ``Idempotency-Key`` header) makes a retried call create nothing new.
A NUL or other control character in a field answers 422 naming it.
"""

from __future__ import annotations

from controlplane import ci, errors
from controlplane.api import endpoint
from controlplane.api.schemas import jobs as job_schemas
from controlplane.db import models
from controlplane.services import images

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
    key = f"ci:{body.idempotency_key}" if body.idempotency_key else None
    made = await images.request_builds(
        call.session, image, call.settings, user=call.user, source=models.JobSource.WEBHOOK, git_ref=body.git_ref, idempotency_key=key
    )
    return job_schemas.JobList(jobs=[job_schemas.Job.model_validate(j) for j in made])
