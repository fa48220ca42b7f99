"""GET /v1/workspaces/{id} in one statement: the row, its disk from its host's report, and its place in the queue.

The general path (``services.workspaces.read_workspace`` plus
``workspace_disk.host_disks`` and ``queue.places``) costs up to three queries
through SQLAlchemy; this is one prepared statement on asyncpg
(controlplane/db/hot.py) whose record :func:`document` turns into the JSON
document ``schemas.Workspace`` describes, without building a model.

The queue place is counted the way ``services.queue`` ranks it: among the
workspaces ``queue.waiting()`` selects, ordered by ``queue.ORDER`` (created_at,
id), so the position is how many waiting ones come no later. It is computed
only for a workspace that itself waits. tests/controlplane/api/test_hot_reads.py
checks both paths give the same document.
"""

from __future__ import annotations

import typing

import orjson

from controlplane.db import coalesce
from controlplane.domain import queue as domain_queue
from shared.domain import disk as disk_rule

WAITING = "{w}.host_id IS NULL AND {w}.observed_state = 'pending' AND {w}.desired_state = 'running' AND {w}.deleted_at IS NULL"

# {id}: the workspace id; {viewer}: the caller's user id, or NULL for an admin (who sees every workspace).
# Built from this module's constants only; the values are parameters.
_ONE = f"""
SELECT w.id::text AS id, w.name, w.owner_id::text AS owner_id, w.image_id::text AS image_id, w.image_ref,
       w.host_id::text AS host_id, w.desired_state::text AS desired_state, w.observed_state::text AS observed_state,
       w.state_reason, w.cpus::float8 AS cpus, w.memory_mb, w.disk_gb, w.env::text AS env, w.ports::text AS ports,
       w.command::text AS command, w.published_ports::text AS published_ports, w.container_id,
       w.placement::text AS placement, w.created_at, w.updated_at, w.version,
       h.id IS NOT NULL AS has_host,
       (h.disk_report -> 'workspaces' ->> w.id::text)::numeric AS disk_used,
       CASE WHEN jsonb_typeof(h.disk_report -> 'disk_limits' -> 'enforced') = 'boolean'
            THEN (h.disk_report -> 'disk_limits' ->> 'enforced')::boolean END AS disk_enforced,
       CASE WHEN {WAITING.format(w="w")} THEN
            (SELECT count(*) FROM workspaces o WHERE {WAITING.format(w="o")} AND (o.created_at, o.id) <= (w.created_at, w.id))
       END AS queue_position,
       CASE WHEN {WAITING.format(w="w")} THEN (SELECT count(*) FROM workspaces o WHERE {WAITING.format(w="o")}) END AS queue_length
FROM workspaces w LEFT JOIN hosts h ON h.id = w.host_id
WHERE w.id = {{id}} AND w.deleted_at IS NULL AND ({{viewer}} IS NULL OR w.owner_id = {{viewer}})
"""  # noqa: S608
# Sent for all the reads of one loop turn at once (controlplane/db/coalesce.py): $1 the ids, $2 the viewers.
SQL = coalesce.batched(_ONE, [("id", "uuid"), ("viewer", "uuid")])


def _fragment(text: str | None) -> typing.Any:
    # jsonb as PostgreSQL prints it is valid JSON: embedded as it is, never parsed.
    return None if text is None else orjson.Fragment(text)


def _ports(text: str, fields: tuple[str, ...]) -> list[dict[str, typing.Any]]:
    # Only the fields the schema shows (schemas.PortOut, schemas.PublishedPort), as the model would keep them.
    return [{f: p[f] for f in fields} for p in orjson.loads(text)]


def document(row: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    """The workspace as ``schemas.Workspace`` renders it, from one record of :data:`SQL`. Pure."""
    reason = row["state_reason"]
    position = row["queue_position"]
    if position is not None:
        reason = domain_queue.describe(reason, domain_queue.Place(position, row["queue_length"]))
    has_host = row["has_host"]
    used = int(row["disk_used"]) if has_host and row["disk_used"] is not None else None
    return {
        "id": row["id"],
        "name": row["name"],
        "owner_id": row["owner_id"],
        "image_id": row["image_id"],
        "image_ref": row["image_ref"],
        "host_id": row["host_id"],
        "desired_state": row["desired_state"],
        "observed_state": row["observed_state"],
        "state_reason": reason,
        "queue_position": position,
        "cpus": row["cpus"],
        "memory_mb": row["memory_mb"],
        "disk_gb": row["disk_gb"],
        "disk": {
            "reserved_bytes": disk_rule.reserved_bytes(row["disk_gb"]),
            "used_bytes": used,
            "enforced": row["disk_enforced"] if has_host else None,
            "over": disk_rule.over(used, row["disk_gb"]),
        },
        "env": _fragment(row["env"]),
        "ports": _ports(row["ports"], ("container_port", "protocol")),
        "command": _fragment(row["command"]),
        "published_ports": _ports(row["published_ports"], ("container_port", "protocol", "host_ip", "host_port")),
        "container_id": row["container_id"],
        "placement": _fragment(row["placement"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "version": row["version"],
    }
