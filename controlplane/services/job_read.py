"""GET /v1/jobs/{id} in one statement: the row, visibility, and its place in the placement queue.

The general path (``services.jobs.get_job`` plus ``queue.job_places``) is up to
two queries through SQLAlchemy's ORM; this is one prepared statement on
asyncpg (controlplane/db/hot.py) whose record :func:`document` shapes into the
JSON document ``schemas.Job`` describes. Visibility is
``access.jobs_visible``'s: an admin sees every job, a user the jobs they asked
for and those about their workspaces or images. A job waits for placement as
``domain.queue.waits_for_placement`` says, and only while its workspace is
one ``workspace_read.WAITING`` selects; its place is counted as there.
tests/controlplane/api/test_hot_reads.py checks both paths give the same document.
"""

from __future__ import annotations

import typing

import orjson

from controlplane.db import coalesce
from controlplane.domain import queue as domain_queue
from controlplane.services.workspace_read import WAITING

# {id}: the job id; {viewer}: the caller's user id, or NULL for an admin (who sees every job).
_ONE = f"""
SELECT j.id::text AS id, j.kind::text AS kind, j.status::text AS status, j.source::text AS source, j.requested_by,
       j.user_id::text AS user_id, j.user_name, j.host_id::text AS host_id, j.host_name, j.image_id::text AS image_id,
       j.image_name, j.workspace_id::text AS workspace_id, j.workspace_name, j.reason, j.placement::text AS placement,
       j.error, j.log_tail, j.result::text AS result, j.attempts, j.created_at, j.updated_at, j.dispatched_at,
       j.started_at, j.finished_at, j.version,
       CASE WHEN w.id IS NOT NULL THEN
            (SELECT count(*) FROM workspaces o WHERE {WAITING.format(w="o")} AND (o.created_at, o.id) <= (w.created_at, w.id))
       END AS queue_position,
       CASE WHEN w.id IS NOT NULL THEN (SELECT count(*) FROM workspaces o WHERE {WAITING.format(w="o")}) END AS queue_length
FROM jobs j
LEFT JOIN workspaces w ON w.id = j.workspace_id
     AND j.kind = 'workspace_create' AND j.status = 'pending' AND j.host_id IS NULL AND {WAITING.format(w="w")}
WHERE j.id = {{id}} AND j.deleted_at IS NULL
  AND ({{viewer}} IS NULL OR j.user_id = {{viewer}}
       OR j.workspace_id IN (SELECT id FROM workspaces WHERE owner_id = {{viewer}})
       OR j.image_id IN (SELECT id FROM images WHERE owner_id = {{viewer}}))
"""  # noqa: S608 - built from constants only; the values are parameters
# Sent for all the reads of one loop turn at once (controlplane/db/coalesce.py): $1 the ids, $2 the viewers.
SQL = coalesce.batched(_ONE, [("id", "uuid"), ("viewer", "uuid")])

_FIELDS = (
    "id", "kind", "status", "source", "requested_by", "user_id", "user_name", "host_id", "host_name", "image_id", "image_name",
    "workspace_id", "workspace_name",
)  # fmt: skip
_TIMES = ("created_at", "updated_at", "dispatched_at", "started_at", "finished_at")


def document(row: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    """The job as ``schemas.Job`` renders it, from one record of :data:`SQL`. Pure."""
    out = {f: row[f] for f in _FIELDS}
    reason = row["reason"]
    position = row["queue_position"]
    if position is not None:
        reason = domain_queue.describe(reason, domain_queue.Place(position, row["queue_length"]))
    out["reason"] = reason
    out["queue_position"] = position
    placement = row["placement"]
    out["placement"] = None if placement is None else orjson.Fragment(placement)
    out["error"] = row["error"]
    out["log_tail"] = row["log_tail"]
    out["result"] = orjson.Fragment(row["result"])
    out["attempts"] = row["attempts"]
    for f in _TIMES:
        out[f] = row[f]
    out["version"] = row["version"]
    return out
