"""Apply one verified agent event to PostgreSQL, idempotently.

Every function here runs inside the caller's transaction and is safe to run
twice with the same event, or with an older event after a newer one
(docs/decisions/0006-idempotent-consumers-and-dead-letters.md): each UPDATE is guarded by the row's last applied ``seq`` (jobs,
workspaces, and per kind for host reports). Times are the control plane's
(``now()``, when the event was applied), never the agent's: a heartbeat always
refreshes ``last_heartbeat_at`` (only its payload is version-guarded), so an
agent whose clock is skewed, or whose versions went back, is never dropped as
"older" nor made to look dead.

Every string an agent sends is cleaned (:func:`shared.domain.text.clean`: no
NUL, no lone surrogate, capped to its column) before it reaches SQL, so what a
build printed is stored rather than refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import metrics
from controlplane.domain.states import JobKind, ObservedState
from controlplane.services import jobs as job_service
from shared import messages
from shared.domain import disk as disk_rule
from shared.domain import text as text_mod

LOG_TAIL_MAX = 65536  # the jobs_log_tail_bounded constraint
REASON_MAX = 2000
ERROR_MAX = 8192

Conn = sa_asyncio.AsyncConnection
logger = logging.getLogger(__name__)


# Host reports are a statement plus parameters, so the consumer can send a
# run of them to the server in one round trip (executemany): each touches only
# its own host's row and its own columns, under its own guard.

HEARTBEAT = sa.text(
    """
    UPDATE hosts SET
        last_heartbeat_at = now(),
        heartbeat = CASE WHEN last_event_seq < :seq THEN CAST(:payload AS jsonb) ELSE heartbeat END,
        agent_version = CASE WHEN last_event_seq < :seq THEN :agent_version ELSE agent_version END,
        capacity_cpus = CASE WHEN last_event_seq < :seq THEN :cpus ELSE capacity_cpus END,
        capacity_memory_mb = CASE WHEN last_event_seq < :seq THEN :memory_mb ELSE capacity_memory_mb END,
        labels = CASE WHEN last_event_seq < :seq THEN labels || CAST(:labels AS jsonb) ELSE labels END,
        last_event_seq = greatest(last_event_seq, :seq),
        status = 'active',
        down_since = NULL
    WHERE id = :host
    """
)


def heartbeat_params(host_id: uuid.UUID, env: messages.Envelope, hb: messages.Heartbeat) -> dict[str, typing.Any]:
    return {
        "payload": _json(hb.model_dump(mode="json")),
        "agent_version": text_mod.clean(hb.agent_version, 64),
        "cpus": hb.cpus,
        "memory_mb": hb.memory_mb,
        "labels": _json(hb.labels),
        "seq": env.seq,
        "host": host_id,
    }


async def heartbeat(conn: Conn, host_id: uuid.UUID, env: messages.Envelope, hb: messages.Heartbeat) -> None:
    await conn.execute(HEARTBEAT, heartbeat_params(host_id, env, hb))


DISK = sa.text(
    """
    UPDATE hosts SET
        disk_report = CAST(:report AS jsonb),
        disk_total_bytes = :total,
        disk_used_bytes = :used,
        disk_reported_at = now(),
        disk_seq = :seq
    WHERE id = :host AND disk_seq < :seq
    """
)


def disk_params(host_id: uuid.UUID, env: messages.Envelope, report: messages.DiskReport) -> dict[str, typing.Any]:
    # The first path is the Docker data root (or the first configured path):
    # it is what placement compares across hosts.
    main = report.paths[0] if report.paths else None
    return {
        "report": _json(report.model_dump(mode="json")),
        "total": disk_rule.capacity(main.total_bytes, main.used_bytes, main.free_bytes) if main else None,
        "used": main.used_bytes if main else None,
        "seq": env.seq,
        "host": host_id,
    }


async def disk(conn: Conn, host_id: uuid.UUID, env: messages.Envelope, report: messages.DiskReport) -> None:
    found = await disk_overruns(conn, [(host_id, env, report)])
    await conn.execute(DISK, disk_params(host_id, env, report))
    announce(found)


@dataclasses.dataclass(frozen=True)
class Overrun:
    """A workspace a disk report shows over its disk reservation, when the report before did not."""

    workspace_id: str
    workspace_name: str
    host_id: uuid.UUID
    host_name: str
    used_bytes: int
    reserved_bytes: int


_DISK_BEFORE = sa.text("SELECT id, name, disk_seq, disk_report -> 'workspaces' FROM hosts WHERE id = ANY(:hosts)")
_RESERVED = sa.text("SELECT id, name, disk_gb FROM workspaces WHERE id = ANY(:ids) AND deleted_at IS NULL")


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def disk_overruns(conn: Conn, reports: typing.Sequence[tuple[uuid.UUID, messages.Envelope, messages.DiskReport]]) -> list[Overrun]:
    """Workspaces newly over their reservation in ``reports`` (before they are stored: each is compared with the one it replaces).

    Two queries for a whole batch, none when no report names a workspace. Reports the DISK guard will ignore (not newer than
    the stored one) are skipped, so a replayed report finds nothing new.
    """
    named = [r for r in reports if r[2].workspaces]
    ids = {u for _, _, r in named for u in map(_uuid_or_none, r.workspaces) if u is not None}
    if not ids:
        return []
    reserved = {str(row[0]): (row[1], row[2]) for row in await conn.execute(_RESERVED, {"ids": list(ids)})}
    if not reserved:
        return []
    hosts = {row[0]: [row[1], row[2], row[3]] for row in await conn.execute(_DISK_BEFORE, {"hosts": list({h for h, _, _ in named})})}
    disk_gb = {wid: gb for wid, (_, gb) in reserved.items()}
    found: list[Overrun] = []
    for host_id, env, report in sorted(named, key=lambda r: r[1].seq):
        state = hosts.get(host_id)
        if state is None or env.seq <= state[1]:
            continue
        for wid in disk_rule.newly_over(state[2], report.workspaces, disk_gb):
            found.append(
                Overrun(
                    workspace_id=wid,
                    workspace_name=reserved[wid][0],
                    host_id=host_id,
                    host_name=state[0],
                    used_bytes=report.workspaces[wid],
                    reserved_bytes=disk_rule.reserved_bytes(disk_gb[wid]),
                )
            )
        state[1], state[2] = env.seq, report.workspaces
    return found


def announce(found: typing.Iterable[Overrun]) -> None:
    """Log and count each overrun (a4c_workspace_disk_overruns_total; monitoring/prometheus/rules/a4c.rules.yml alerts on it)."""
    for o in found:
        metrics.DISK_OVERRUNS.inc()
        logger.warning(
            "workspace %s (%s) on host %s uses %d bytes of disk, over its reservation of %d bytes",
            o.workspace_name,
            o.workspace_id,
            o.host_name,
            o.used_bytes,
            o.reserved_bytes,
            extra={"workspace_id": o.workspace_id, "host_id": str(o.host_id), "used_bytes": o.used_bytes, "reserved_bytes": o.reserved_bytes},
        )


# Stored as the host's latest inventory; the reconciler diffs it against
# desired state (docs/decisions/0005-level-triggered-reconciliation.md). Applying it here is only bookkeeping.
INVENTORY = sa.text(
    """
    UPDATE hosts SET inventory = CAST(:inv AS jsonb), inventory_at = now(), inventory_seq = :seq
    WHERE id = :host AND inventory_seq < :seq
    """
)


def inventory_params(host_id: uuid.UUID, env: messages.Envelope, inv: messages.Inventory) -> dict[str, typing.Any]:
    return {"inv": _json(inv.model_dump(mode="json")), "seq": env.seq, "host": host_id}


async def inventory(conn: Conn, host_id: uuid.UUID, env: messages.Envelope, inv: messages.Inventory) -> None:
    await conn.execute(INVENTORY, inventory_params(host_id, env, inv))


REPORTS: dict[messages.EventKind, tuple[sa.TextClause, typing.Callable[..., dict[str, typing.Any]]]] = {
    messages.EventKind.HEARTBEAT: (HEARTBEAT, heartbeat_params),
    messages.EventKind.DISK: (DISK, disk_params),
    messages.EventKind.INVENTORY: (INVENTORY, inventory_params),
}


async def job_progress(conn: Conn, host_id: uuid.UUID, env: messages.Envelope, p: messages.JobProgress) -> None:
    reason = text_mod.clean(f"{p.phase}: {p.message}".strip(": "), REASON_MAX)
    await job_service.progressed(conn, _uuid(p.job_id), host_id, seq=env.seq, reason=reason)


async def job_log(conn: Conn, host_id: uuid.UUID, env: messages.Envelope, log: messages.JobLog) -> None:
    text = text_mod.clean("".join(line if line.endswith("\n") else line + "\n" for line in log.lines), LOG_TAIL_MAX, keep="tail")
    await job_service.logged(conn, _uuid(log.job_id), host_id, seq=env.seq, text=text, cap=LOG_TAIL_MAX)


async def job_result(conn: Conn, host_id: uuid.UUID, env: messages.Envelope, r: messages.JobResult) -> dict[str, typing.Any] | None:
    """Finish the job; returns the job row (kind, workspace_id, image_id) when it changed."""
    if r.interrupted:
        reason = text_mod.clean(f"interrupted on the agent ({r.error or 'shutdown'}); will be retried", REASON_MAX)
        await job_service.handed_back(conn, _uuid(r.job_id), host_id, seq=env.seq, reason=reason)
        return None
    job_id = _uuid(r.job_id)
    row = await job_service.finished(
        conn,
        job_id,
        host_id,
        seq=env.seq,
        ok=r.ok,
        result_json=_json(r.result),
        error=None if r.ok else text_mod.clean(r.error or "the agent reported a failure without a message", ERROR_MAX),
    )
    if row is None:
        return None
    job = row
    if job["kind"] == JobKind.IMAGE_BUILD and r.ok and job["image_id"] is not None and job_id is not None:
        await image_built(conn, host_id, job["image_id"], job_id, r.result)
    elif job["workspace_id"] is not None:
        await _workspace_job_done(conn, job["kind"], job["workspace_id"], r)
    return job


# A state an agent reports, as the workspace's observed state; "missing" is none
# of them: the reconciler decides what that means.
_REPORTED = {
    s.value: s
    for s in (ObservedState.CREATING, ObservedState.RUNNING, ObservedState.STOPPED, ObservedState.EXITED, ObservedState.FAILED, ObservedState.DELETED)
}
# Where a workspace's job leaves it when it succeeds.
_DONE = {
    JobKind.WORKSPACE_CREATE: ObservedState.RUNNING,
    JobKind.WORKSPACE_START: ObservedState.RUNNING,
    JobKind.WORKSPACE_STOP: ObservedState.STOPPED,
    JobKind.WORKSPACE_DELETE: ObservedState.DELETED,
}


async def workspace_state(conn: Conn, host_id: uuid.UUID, env: messages.Envelope, s: messages.WorkspaceState) -> None:
    observed = _REPORTED.get(s.state)
    if observed is None:  # "missing": the reconciler decides what that means
        return
    await conn.execute(
        sa.text(
            """
            UPDATE workspaces SET
                observed_state = CAST(:observed AS workspace_observed_state),
                container_id = coalesce(:container_id, container_id),
                published_ports = CASE WHEN :has_ports THEN CAST(:ports AS jsonb) ELSE published_ports END,
                state_reason = :reason,
                observed_seq = :seq,
                observed_at = now(),
                deleted_at = CASE WHEN :observed = 'deleted' THEN coalesce(deleted_at, now()) ELSE deleted_at END
            WHERE id = :ws AND host_id = :host AND observed_seq < :seq
              AND NOT (observed_state = 'deleted' AND :observed <> 'deleted')
            """
        ),
        {
            "observed": observed.value,
            "container_id": text_mod.clean_optional(s.container_id, 80),
            "has_ports": bool(s.ports) or s.state == ObservedState.RUNNING,
            "ports": _json([p.model_dump(mode="json") for p in s.ports]),
            "reason": text_mod.clean(s.reason, REASON_MAX),
            "seq": env.seq,
            "ws": _uuid(s.workspace_id),
            "host": host_id,
        },
    )


async def image_built(conn: Conn, host_id: uuid.UUID, image_id: uuid.UUID, job_id: uuid.UUID, result: dict[str, typing.Any]) -> None:
    docker_id = text_mod.clean(str(result.get("image_id") or ""), 128)
    tag = text_mod.clean(str(result.get("tag") or ""), 255)
    await conn.execute(
        sa.text(
            """
            INSERT INTO host_images (host_id, image_id, docker_image_id, tag, built_at)
            VALUES (:host, :image, :docker_id, :tag, now())
            ON CONFLICT (host_id, image_id) DO UPDATE SET docker_image_id = EXCLUDED.docker_image_id, tag = EXCLUDED.tag, built_at = now()
            """
        ),
        {"host": host_id, "image": image_id, "docker_id": docker_id, "tag": tag},
    )
    await conn.execute(
        sa.text("UPDATE images SET latest_digest = :digest, latest_build_job_id = :job, latest_built_at = now() WHERE id = :image"),
        {"digest": text_mod.clean(str(result.get("digest") or docker_id), 128), "job": job_id, "image": image_id},
    )


async def _workspace_job_done(conn: Conn, kind: str, workspace_id: uuid.UUID, r: messages.JobResult) -> None:
    if r.ok:
        target = _DONE.get(JobKind(kind))
        if target is None:
            return
        ports = r.result.get("ports")
        await conn.execute(
            sa.text(
                """
                UPDATE workspaces SET
                    observed_state = CAST(:target AS workspace_observed_state),
                    container_id = coalesce(:container_id, container_id),
                    published_ports = CASE WHEN :has_ports THEN CAST(:ports AS jsonb) ELSE published_ports END,
                    state_reason = '',
                    observed_at = now(),
                    deleted_at = CASE WHEN :target = 'deleted' THEN coalesce(deleted_at, now()) ELSE deleted_at END
                WHERE id = :ws AND observed_state <> 'deleted'
                """
            ),
            {
                "target": target.value,
                "container_id": text_mod.clean(str(r.result["container_id"]), 80) if r.result.get("container_id") else None,
                "has_ports": isinstance(ports, list),
                "ports": _json(ports if isinstance(ports, list) else []),
                "ws": workspace_id,
            },
        )
    elif kind == JobKind.WORKSPACE_CREATE:
        await conn.execute(
            sa.text(
                "UPDATE workspaces SET observed_state = 'failed', state_reason = :reason WHERE id = :ws AND observed_state IN ('pending', 'creating')"
            ),
            {"reason": text_mod.clean(r.error or "create failed", REASON_MAX), "ws": workspace_id},
        )


def _json(value: typing.Any) -> str:
    """JSON for a jsonb parameter: jsonb refuses \\u0000 and lone surrogates as text does."""
    return json.dumps(text_mod.clean_tree(value))


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
