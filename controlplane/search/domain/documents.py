"""Job rows and job-sync messages -> versioned index actions, and what ES said about each.

Errors::

    Undecodable        a job-sync message that is not one (dead-lettered, never retried)

A job-sync message (written by the ``a4c_job_sync`` trigger, published by the
relay) is JSON ``{"kind": "job.upsert"|"job.delete", "id", "version",
"job": <row>}``; a hard delete has no ``job``. Every action carries the row's
version with ``version_type=external``, so Elasticsearch keeps whichever
version is highest, whatever order messages arrive in. A delete is indexed as a
tombstone (``deleted: true``) at its version, so it also wins against any older
update replayed later. Field values pass through unchanged: judging them is the
mapping's job, and a value it refuses is a dead letter with its reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import typing

FIELDS = (
    "id",
    "kind",
    "status",
    "source",
    "user_id",
    "user_name",
    "host_id",
    "host_name",
    "image_id",
    "image_name",
    "workspace_id",
    "workspace_name",
    "error",
    "log_tail",
    "reason",
    "attempts",
    "created_at",
    "updated_at",
    "dispatched_at",
    "started_at",
    "finished_at",
    "deleted_at",
)
MAX_VERSION = 2**63 - 1


class Undecodable(ValueError):
    """The message is not a job-sync message; ``str()`` says why."""


@dataclasses.dataclass(frozen=True)
class Change:
    """One job's state at one version, ready to index."""

    id: str
    version: int
    deleted: bool
    doc: dict[str, typing.Any]
    updated_at: datetime.datetime | None = None

    def action(self, index: str) -> tuple[dict[str, typing.Any], dict[str, typing.Any]]:
        """The bulk header and source lines for ``index`` (an alias or a concrete index)."""
        return (
            {"index": {"_index": index, "_id": self.id, "version": self.version, "version_type": "external"}},
            self.doc,
        )


def document(job: typing.Mapping[str, typing.Any], version: int, *, deleted: bool) -> dict[str, typing.Any]:
    doc = {name: job.get(name) for name in FIELDS}
    doc["text"] = f"{job.get('error') or ''} {job.get('log_tail') or ''}"
    doc["version"] = version
    doc["deleted"] = deleted or job.get("deleted_at") is not None
    return doc


def from_row(row: typing.Mapping[str, typing.Any]) -> Change:
    """A ``jobs`` row as JSON (backfill and repair read it the way the trigger writes it)."""
    version = _version(row.get("version"))
    deleted = row.get("deleted_at") is not None
    return Change(str(row["id"]), version, deleted, document(row, version, deleted=deleted), _when(row.get("updated_at")))


def from_message(value: bytes | str | None) -> Change:
    """Decode one job-sync message value."""
    if value is None:
        raise Undecodable("empty message")
    try:
        message = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Undecodable(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise Undecodable("not a JSON object")
    kind = message.get("kind")
    if kind not in ("job.upsert", "job.delete"):
        raise Undecodable(f"kind must be job.upsert or job.delete, got {kind!r}")
    job_id = message.get("id")
    if not isinstance(job_id, str) or not job_id or len(job_id) > 512:
        raise Undecodable("id must be a non-empty string")
    version = _version(message.get("version"))
    job = message.get("job")
    deleted = kind == "job.delete"
    if job is None:
        if not deleted:
            raise Undecodable("job.upsert without a job")
        return Change(job_id, version, True, {"id": job_id, "version": version, "deleted": True})
    if not isinstance(job, dict):
        raise Undecodable("job must be an object")
    return Change(job_id, version, deleted, document({**job, "id": job_id}, version, deleted=deleted), _when(job.get("updated_at")))


def newest(changes: typing.Iterable[Change]) -> list[Change]:
    """One change per job, its highest version: the others would only be 409s."""
    best: dict[str, Change] = {}
    for change in changes:
        held = best.get(change.id)
        if held is None or change.version > held.version:
            best[change.id] = change
    return list(best.values())


def _version(value: typing.Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_VERSION:
        raise Undecodable(f"version must be a positive 64-bit integer, got {value!r}")
    return value


def _when(value: typing.Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


class Outcome(enum.Enum):
    INDEXED = "indexed"
    STALE = "stale"  # 409: ES already holds this version or a newer one; harmless
    RETRY = "retry"  # 429, 5xx, a missing alias: try the item again later
    REJECTED = "rejected"  # any other 4xx: this document will never be accepted


def outcome(status: int, error: typing.Mapping[str, typing.Any] | None = None) -> Outcome:
    """Classify one bulk item result."""
    if 200 <= status < 300:
        return Outcome.INDEXED
    if status == 409:
        return Outcome.STALE
    if status == 429 or status >= 500:
        return Outcome.RETRY
    if status == 404 and (error or {}).get("type") == "index_not_found_exception":
        # The alias is missing (being recreated, or the cluster was reset):
        # an operational fault, not the document's.
        return Outcome.RETRY
    return Outcome.REJECTED


def reason(error: typing.Any) -> str:
    """ES's error object -> one line: ``type: reason (caused by: ...)``."""
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict):
        text += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
    return text
