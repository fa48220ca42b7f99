"""/v1/jobs: get one, list."""

from __future__ import annotations

from controlplane.api import endpoint
from controlplane.api.schemas import jobs as schemas
from controlplane.services import jobs

routes = endpoint.Routes("jobs")


@routes.get("/v1/jobs", query=schemas.JobQuery, response=schemas.JobPage)
async def list_jobs(call: endpoint.Call) -> schemas.JobPage:
    """List jobs about you (yours, or about your workspaces or images), newest first."""
    q: schemas.JobQuery = call.query
    rows, cursor = await jobs.list_jobs(
        call.session, call.user, limit=call.page_size(), cursor=q.cursor, status=q.status, kind=q.kind,
        workspace_id=q.workspace_id, image_id=q.image_id, host_id=q.host_id,
    )
    return schemas.JobPage(items=[schemas.Job.model_validate(r) for r in rows], next_cursor=cursor)


@routes.get("/v1/jobs/{job_id}", response=schemas.Job)
async def get_job(call: endpoint.Call) -> schemas.Job:
    """Get one job: status, timestamps, host, error text, log tail and placement reason."""
    return schemas.Job.model_validate(await jobs.get_job(call.session, call.user, call.params["job_id"]))
