"""The event consumer: verify each agent event against its host's key, then apply it.

Runs in every control-plane instance as one consumer group, so the partitions
of ``<prefix>.events`` are shared among them. A message is applied in its own
transaction; offsets are committed after the batch is applied, so a crash
replays at most one batch, which the idempotent appliers absorb.

Rejected messages (not JSON, unknown host, bad signature, schema mismatch)
are counted by reason and logged, never applied, and never stop the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
import uuid

import prometheus_client
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.events import apply
from shared import kafka, messages, signing, topics

logger = logging.getLogger(__name__)

APPLIED = prometheus_client.Counter("a4c_events_applied_total", "Agent events applied", ["kind"])
REJECTED = prometheus_client.Counter("a4c_events_rejected_total", "Agent events rejected", ["reason"])
LAG = prometheus_client.Gauge("a4c_events_consumer_lag_seconds", "Age of the newest event applied, at the time it was applied")

APPLIERS: dict[messages.EventKind, typing.Callable[..., typing.Awaitable[typing.Any]]] = {
    messages.EventKind.HEARTBEAT: apply.heartbeat,
    messages.EventKind.DISK: apply.disk,
    messages.EventKind.INVENTORY: apply.inventory,
    messages.EventKind.JOB_PROGRESS: apply.job_progress,
    messages.EventKind.JOB_LOG: apply.job_log,
    messages.EventKind.JOB_RESULT: apply.job_result,
    messages.EventKind.WORKSPACE_STATE: apply.workspace_state,
}


class Rejected(Exception):
    """This message must not be applied; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class HostKeys:
    """Host signing keys, cached; refreshed when a host is unknown or a signature fails.

    A refresh per host is rate-limited so a flood of forged messages cannot turn
    into a flood of database reads.
    """

    def __init__(self, engine: sa_asyncio.AsyncEngine, min_refresh: float = 5.0) -> None:
        self._engine = engine
        self._keys: dict[str, str] = {}
        self._refreshed: dict[str, float] = {}
        self._min_refresh = min_refresh

    async def get(self, host_id: str, *, refresh: bool = False) -> str | None:
        if host_id in self._keys and not refresh:
            return self._keys[host_id]
        now = time.monotonic()
        if now - self._refreshed.get(host_id, -1e9) < self._min_refresh:
            return self._keys.get(host_id)
        self._refreshed[host_id] = now
        try:
            hid = uuid.UUID(host_id)
        except ValueError:
            return None
        async with self._engine.connect() as conn:
            key = (await conn.execute(sa.text("SELECT signing_key FROM hosts WHERE id = :id"), {"id": hid})).scalar()
        if key is None:
            self._keys.pop(host_id, None)
        else:
            self._keys[host_id] = key
        return key


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
            raise Rejected("bad_signature", f"host {host_id}") from None
    try:
        env = messages.decode_envelope(verified)
        kind, payload = messages.parse_event(env)
    except messages.MessageError as exc:
        raise Rejected("schema", str(exc)) from exc
    return env, kind, payload


async def handle(raw: bytes, engine: sa_asyncio.AsyncEngine, keys: HostKeys) -> messages.EventKind | None:
    """Verify and apply one message. Returns its kind, or None if rejected."""
    try:
        env, kind, payload = await verify(raw, keys)
    except Rejected as exc:
        REJECTED.labels(exc.reason).inc()
        logger.warning("rejected agent event: %s", exc)
        return None
    async with engine.begin() as conn:
        await APPLIERS[kind](conn, uuid.UUID(env.host_id), env, payload)
    APPLIED.labels(kind.value).inc()
    LAG.set(max(0.0, time.time() - env.issued_at))
    return kind


async def run(
    engine: sa_asyncio.AsyncEngine,
    settings: cp_settings.Settings,
    *,
    stopping: asyncio.Event,
    client_id: str = "a4c-controlplane",
) -> None:
    """Consume ``<prefix>.events`` until ``stopping`` is set, reconnecting on outages."""
    names = topics.Topics(settings.kafka.topic_prefix)
    keys = HostKeys(engine)

    async def apply_one(record: typing.Any) -> None:
        await handle(record.value, engine, keys)

    await kafka.consume(
        settings.kafka, names.events, group_id=names.controlplane_group, client_id=client_id, handle=apply_one,
        stopping=stopping, retryable=(OSError, sa.exc.DBAPIError), partitions=topics.EVENTS_PARTITIONS,
    )
