"""The event consumer: verify each agent event against its host's key, then apply it.

Runs in every control-plane instance as one consumer group, so the partitions
of ``<prefix>.events`` are shared among them. Each fetched batch is applied in
order; host reports in a row (heartbeats, disk reports, inventories: each
touches only its own host's row) share one transaction of up to
``events.batch_size``, because one commit per report is what limited how many
hosts one instance can follow (bench/fleet); job and workspace events keep a
transaction each, so a result is visible the moment it is applied. Offsets
are committed after the batch is applied, so a crash replays at most one
batch, which the idempotent appliers absorb.

Rejected messages (not JSON, unknown host, bad signature, a key superseded
by a re-key (controlplane/events/keys.py), schema mismatch) are counted by
reason in ``a4c_events_rejected_total`` and logged, never applied, and never stop the loop.
An event the database refuses (or one over ``consumers.max_message_bytes``)
is dead-lettered by :func:`shared.consuming.consume`, which applies a failed
batch again one event per transaction so only that event is set aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing
import uuid

import prometheus_client
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.events import apply
from controlplane.events import keys as key_cache
from controlplane.events import progress as progress_mod
from shared import consuming, logs, messages, signing, topics

logger = logging.getLogger(__name__)

APPLIED = prometheus_client.Counter("a4c_events_applied_total", "Agent events applied", ["kind"])
REJECTED = prometheus_client.Counter("a4c_events_rejected_total", "Agent events rejected", ["reason"])
LAG = prometheus_client.Gauge("a4c_events_consumer_lag_seconds", "Age of the oldest event of the last transaction of events applied, at its commit")

# Host reports: applied many to a transaction (see the module docstring).
REPORTS = frozenset(apply.REPORTS)

APPLIERS: dict[messages.EventKind, typing.Callable[..., typing.Awaitable[typing.Any]]] = {
    messages.EventKind.HEARTBEAT: apply.heartbeat,
    messages.EventKind.DISK: apply.disk,
    messages.EventKind.INVENTORY: apply.inventory,
    messages.EventKind.JOB_PROGRESS: apply.job_progress,
    messages.EventKind.JOB_LOG: apply.job_log,
    messages.EventKind.JOB_RESULT: apply.job_result,
    messages.EventKind.WORKSPACE_STATE: apply.workspace_state,
}


# The events that tell a job's or workspace's story, logged once applied
# (docs/operations/logging.md): with the job, the workspace and the request
# id the agent carried back, so one query finds them with the API's lines.
_STORY = frozenset({messages.EventKind.JOB_RESULT, messages.EventKind.WORKSPACE_STATE})


def _applied(env: messages.Envelope, kind: messages.EventKind, payload: typing.Any) -> None:
    with logs.scope(request_id=env.request_id, job_id=getattr(payload, "job_id", None), workspace_id=getattr(payload, "workspace_id", None)):
        if isinstance(payload, messages.JobResult):
            logger.info(
                "job result applied", extra={"host_id": env.host_id, "ok": payload.ok, "error": payload.error, "interrupted": payload.interrupted}
            )
        elif isinstance(payload, messages.WorkspaceState):
            logger.info("workspace state applied", extra={"host_id": env.host_id, "state": payload.state, "reason": payload.reason})


class Rejected(Exception):
    """This message must not be applied; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


HostKeys = key_cache.HostKeys  # controlplane/events/keys.py: cached, dropped at once on a re-key


def _signed_with(raw: bytes, key: str) -> bool:
    try:
        signing.verify(raw, key)
        return True
    except signing.SignatureError:
        return False


async def verify(raw: bytes, keys: HostKeys) -> tuple[messages.Envelope, messages.EventKind, typing.Any]:
    try:
        body = signing.peek(raw)
    except signing.SignatureError as exc:
        raise Rejected("malformed", str(exc)) from exc
    host_id = body.get("host_id")
    if not isinstance(host_id, str):
        raise Rejected("malformed", "no host_id")
    key = await keys.get(host_id)
    if key is None:
        raise Rejected("unknown_host", host_id)
    verified: dict[str, typing.Any] | None
    try:
        verified = signing.verify(raw, key)
    except signing.SignatureError:
        # The host may have re-enrolled with a new key: look once more.
        key = await keys.get(host_id, refresh=True)
        try:
            verified = signing.verify(raw, key) if key else None
        except signing.SignatureError:
            verified = None
        if verified is None:
            if any(_signed_with(raw, old) for old in keys.superseded(host_id)):
                raise Rejected("superseded_key", f"host {host_id}: signed with a key replaced by a re-key") from None
            raise Rejected("bad_signature", f"host {host_id}") from None
    try:
        env = messages.decode_envelope(verified)
        kind, payload = messages.parse_event(env)
    except messages.MessageError as exc:
        raise Rejected("schema", str(exc)) from exc
    return env, kind, payload


async def handle(raw: bytes, engine: sa_asyncio.AsyncEngine, keys: HostKeys) -> messages.EventKind | None:
    """Verify and apply one message. Returns its kind, or None if rejected."""
    return (await handle_batch([raw], engine, keys))[0]


Verified = tuple[messages.Envelope, messages.EventKind, typing.Any]


async def handle_batch(
    raws: typing.Sequence[bytes], engine: sa_asyncio.AsyncEngine, keys: HostKeys, *, batch_size: int = 200
) -> list[messages.EventKind | None]:
    """Verify and apply messages in their order. Returns each one's kind, or None where rejected."""
    verified: list[Verified | None] = []
    for raw in raws:
        try:
            verified.append(await verify(raw, keys))
        except Rejected as exc:
            REJECTED.labels(exc.reason).inc()
            logger.warning("rejected agent event: %s", exc)
            verified.append(None)
    reports: list[Verified] = []
    for item in verified:
        if item is None:
            continue
        if item[1] in REPORTS:
            reports.append(item)
            if len(reports) >= batch_size:
                await _apply(engine, reports)
                reports = []
        else:
            if reports:
                await _apply(engine, reports)
                reports = []
            await _apply(engine, [item])
    if reports:
        await _apply(engine, reports)
    return [item[1] if item is not None else None for item in verified]


async def _apply(engine: sa_asyncio.AsyncEngine, items: list[Verified]) -> None:
    """One transaction for ``items``: host reports as one executemany per kind (one round trip each), anything else in order."""
    overruns: list[apply.Overrun] = []
    async with engine.begin() as conn:
        if all(kind in REPORTS for _, kind, _ in items):
            # Read before the disk reports are stored: a workspace is announced when it is over in a report and was not in the one before.
            disks = [(uuid.UUID(env.host_id), env, payload) for env, kind, payload in items if kind is messages.EventKind.DISK]
            overruns = await apply.disk_overruns(conn, disks) if disks else []
            # Kinds touch disjoint columns under their own guards, so only the order within a kind matters.
            by_kind: dict[messages.EventKind, list[dict[str, typing.Any]]] = {}
            for env, kind, payload in items:
                by_kind.setdefault(kind, []).append(apply.REPORTS[kind][1](uuid.UUID(env.host_id), env, payload))
            for kind, params in by_kind.items():
                await conn.execute(apply.REPORTS[kind][0], params)
        else:
            for env, kind, payload in items:
                await APPLIERS[kind](conn, uuid.UUID(env.host_id), env, payload)
    apply.announce(overruns)  # after the commit: a batch applied again (one event at a time) announces nothing twice
    for env, kind, payload in items:
        if kind in _STORY:
            _applied(env, kind, payload)
    now = time.time()
    for _, kind, _ in items:
        APPLIED.labels(kind.value).inc()
    LAG.set(max(0.0, now - min(env.issued_at for env, _, _ in items)))


async def run(
    engine: sa_asyncio.AsyncEngine,
    settings: cp_settings.Settings,
    *,
    stopping: asyncio.Event,
    client_id: str = "a4c-controlplane",
    progress: consuming.Progress | None = None,
) -> None:
    """Consume ``<prefix>.events`` until ``stopping`` is set, reconnecting on outages."""
    names = topics.Topics(settings.kafka.topic_prefix)
    host_keys = HostKeys(engine)
    # How far this instance has applied its partitions, for host-down decisions (controlplane/domain/hearing.py).
    recorder = progress_mod.Recorder(engine, names.events, interval=settings.events.progress_interval, gap=settings.events.progress_gap)
    watcher = asyncio.create_task(host_keys.watch(settings.database.url, refresh=settings.events.key_refresh, stopping=stopping))

    async def apply_one(record: typing.Any) -> None:
        await handle(record.value, engine, host_keys)

    async def apply_batch(records: list[typing.Any]) -> None:
        await handle_batch([r.value for r in records], engine, host_keys, batch_size=settings.events.batch_size)

    try:
        await consuming.consume(
            settings.kafka,
            names.events,
            group_id=names.controlplane_group,
            client_id=client_id,
            name="events",
            handle=apply_one,
            handle_batch=apply_batch,
            stopping=stopping,
            partitions=topics.EVENTS_PARTITIONS,
            max_record_bytes=settings.consumers.max_message_bytes,
            progress=progress,
            polled=recorder.polled,
            consumer_options={"fetch_max_wait_ms": int(settings.events.fetch_max_wait * 1000)},
        )
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
