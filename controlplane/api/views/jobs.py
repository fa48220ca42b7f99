"""/v1/jobs: get one, list, cancel."""

from __future__ import annotations

import typing

from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import commands, errors
from controlplane.api import endpoint, keys
from controlplane.api.schemas import common
from controlplane.api.schemas import jobs as schemas
from controlplane.db import models
from controlplane.domain import queue as domain_queue
from controlplane.services import job_read, jobs, queue
from shared import messages

routes = endpoint.Routes("jobs")


async def render_all(session: sa_asyncio.AsyncSession, rows: typing.Sequence[models.Job]) -> list[schemas.Job]:
    """Jobs as the API shows them: a job waiting for a host also says where it stands in the queue (one query for all)."""
    places = await queue.job_places(session, rows)
    return [render(row, places.get(row.id)) for row in rows]


def render(row: models.Job, place: domain_queue.Place | None = None) -> schemas.Job:
    job = schemas.Job.model_validate(row)
    if place is not None:
        job.queue_position = place.position
        job.reason = domain_queue.describe(row.reason, place)
    return job


@routes.get("/v1/jobs", query=schemas.JobQuery, response=schemas.JobPage)
async def list_jobs(call: endpoint.Call) -> schemas.JobPage:
    """List jobs about you (yours, or about your workspaces or images), newest first."""
    q: schemas.JobQuery = call.query
    rows, cursor = await jobs.list_jobs(
        call.session,
        call.user,
        limit=call.page_size(),
        cursor=q.cursor,
        status=q.status,
        kind=q.kind,
        workspace_id=q.workspace_id,
        image_id=q.image_id,
        host_id=q.host_id,
    )
    return schemas.JobPage(items=await render_all(call.session, rows), next_cursor=cursor)


@routes.get("/v1/jobs/{job_id}", response=schemas.Job, query=common.WatchQuery, watchable=True, hot=True)
async def get_job(call: endpoint.Call) -> endpoint.Document:
    """Get one job: status, timestamps, host, error text, log tail and placement reason (with its place in the queue while it waits for a host).

    With `index`, a blocking read: it answers when the job's index (`version`, header X-A4C-Index) is past `index`, or after `wait`.
    """
    # The hot read: one prepared statement, rendered without a model (controlplane/services/job_read.py).
    user = call.user
    app = call.request.app
    job_id, q = call.params["job_id"], call.query
    args = (job_read.SQL, job_id, None if user.is_admin else user.user_id)
    row = await app[keys.WATCHES].read("job", job_id, user.user_id, q.index, q.wait, lambda: app[keys.HOT_READS].row(*args))
    if row is None:
        raise errors.NotFound("no such job")
    return endpoint.Document(job_read.document(row), index=row["version"])


@routes.post("/v1/jobs/{job_id}/cancel", response=schemas.Job)
async def cancel_job(call: endpoint.Call) -> schemas.Job:
    """Cancel a build or cleanup that has not ended; one already on its host is stopped there (409 for a workspace's jobs: stop or delete the workspace instead)."""
    row, on_host = await jobs.cancel_for(call.session, call.user, call.params["job_id"])
    if on_host and row.host_id is not None:
        # Its agent has it: told in the same transaction (outbox), it stops the build there.
        await commands.send(
            call.session,
            host_id=row.host_id,
            kind=messages.CommandKind.JOB_CANCEL,
            payload=messages.JobCancel(job_id=str(row.id), reason=row.reason),
            key=str(row.image_id or row.id),
        )
    return render(row)
