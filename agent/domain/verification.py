"""Deciding whether a command from Kafka may run: signature, address, freshness.

Nothing runs unless :func:`check` returns :class:`Accepted`. The checks, in
order: the HMAC signature with this host's key (unsigned or mis-signed bodies
are rejected before anything in them is trusted), the envelope shape, the
addressed host, replay (an id already executed, or in flight), age (older
than the replay window) and clock skew (issued too far in the future), and
last the payload schema.
"""

from __future__ import annotations

import dataclasses
import typing

from shared import messages, signing

UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad-signature"
MALFORMED = "malformed"
WRONG_HOST = "wrong-host"
REPLAYED = "replayed"
EXPIRED = "expired"
FROM_THE_FUTURE = "from-the-future"
INVALID = "invalid-payload"


@dataclasses.dataclass(frozen=True)
class Accepted:
    envelope: messages.Envelope
    kind: messages.CommandKind
    payload: typing.Any

    @property
    def job_id(self) -> str:
        """The job the command belongs to; commands without one use their own id."""
        return getattr(self.payload, "job_id", None) or self.envelope.id


@dataclasses.dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str
    command_id: str | None = None
    # Set only when the signature was valid: then the control plane sent the
    # command and deserves a job result explaining why it did not run.
    job_id: str | None = None
    issued_at: float | None = None


def check(
    raw: bytes,
    *,
    key: str,
    host_id: str,
    now: float,
    replay_window: float,
    max_skew: float,
    seen: typing.Container[str],
) -> Accepted | Rejected:
    try:
        body = signing.verify(raw, key)
    except signing.SignatureError as exc:
        reason = UNSIGNED if str(exc) in ("unsigned", "not JSON", "not a JSON object") else BAD_SIGNATURE
        return Rejected(reason, str(exc), command_id=_peek_id(raw))
    try:
        env = messages.decode_envelope(body)
    except messages.MessageError as exc:
        return Rejected(MALFORMED, str(exc), command_id=body.get("id") if isinstance(body.get("id"), str) else None)
    if env.host_id != host_id:
        return Rejected(WRONG_HOST, f"addressed to host {env.host_id!r}", command_id=env.id)
    if env.id in seen:
        return Rejected(REPLAYED, "command id already executed", command_id=env.id)
    if env.issued_at < now - replay_window:
        return Rejected(EXPIRED, f"issued {now - env.issued_at:.0f}s ago, replay window is {replay_window:.0f}s", command_id=env.id)
    if env.issued_at > now + max_skew:
        return Rejected(FROM_THE_FUTURE, f"issued {env.issued_at - now:.0f}s in the future", command_id=env.id)
    try:
        kind, payload = messages.parse_command(env)
    except messages.MessageError as exc:
        job_id = env.payload.get("job_id")
        return Rejected(
            INVALID,
            str(exc),
            command_id=env.id,
            job_id=job_id if isinstance(job_id, str) else env.id,
            issued_at=env.issued_at,
        )
    return Accepted(env, kind, payload)


def _peek_id(raw: bytes) -> str | None:
    try:
        found = signing.peek(raw).get("id")
    except signing.SignatureError:
        return None
    return found if isinstance(found, str) else None


def prune_seen(seen: typing.Mapping[str, float], *, now: float, replay_window: float, max_entries: int) -> dict[str, float]:
    """The seen-set worth keeping: ids still inside the replay window, newest first, bounded.

    An id older than the window needs no entry: the age check rejects it anyway.
    """
    fresh = [(issued, cid) for cid, issued in seen.items() if issued >= now - replay_window]
    fresh.sort(reverse=True)
    return {cid: issued for issued, cid in fresh[:max_entries]}
