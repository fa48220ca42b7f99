"""HMAC signing of agent traffic (docs/decisions/0007-signing-and-enrolment.md).

Errors::

    SignatureError         the message is unsigned, mis-signed or malformed

Every command to an agent and every event from one is a JSON envelope signed
with the host's key. The signature covers the canonical JSON of the whole
envelope minus ``sig`` (sorted keys, no spaces), so any change to any field,
including the host id, invalidates it.

CI systems sign their build requests the same way, with their own key
(:func:`sign_ci_build`; docs/ci.md shows it in shell too), and an agent may
prove it holds its host's current key when re-enrolling (:func:`enrolment_proof`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import typing

SIG_FIELD = "sig"


class SignatureError(Exception):
    """The message is unsigned, mis-signed or not a JSON object."""


def new_key() -> str:
    """A fresh per-host key: 32 random bytes, urlsafe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def canonical(body: typing.Mapping[str, typing.Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(body: typing.Mapping[str, typing.Any], key: str) -> str:
    unsigned = {k: v for k, v in body.items() if k != SIG_FIELD}
    return hmac.new(key.encode(), canonical(unsigned), hashlib.sha256).hexdigest()


def sign(body: typing.Mapping[str, typing.Any], key: str) -> bytes:
    """The wire form: the body plus its signature, as JSON bytes."""
    signed = dict(body)
    signed[SIG_FIELD] = signature(body, key)
    return canonical(signed)


def peek(raw: bytes) -> dict[str, typing.Any]:
    """Decode without verifying (to learn which host's key to verify with)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignatureError("not JSON") from exc
    if not isinstance(body, dict):
        raise SignatureError("not a JSON object")
    return body


def verify(raw: bytes, key: str) -> dict[str, typing.Any]:
    """Decode and verify; returns the body without ``sig``."""
    body = peek(raw)
    given = body.pop(SIG_FIELD, None)
    if not isinstance(given, str):
        raise SignatureError("unsigned")
    if not hmac.compare_digest(given, signature(body, key)):
        raise SignatureError("bad signature")
    return body


def sign_ci_build(request: typing.Mapping[str, typing.Any], system: str, key: str, *, issued_at: int | None = None) -> bytes:
    """A build request for ``<prefix>.ci-builds`` signed as CI system ``system`` (fields: docs/ci.md)."""
    body = {**request, "ci_system": system, "issued_at": int(time.time()) if issued_at is None else issued_at}
    return sign(body, key)


def enrolment_proof(host_name: str, token: str, key: str) -> str:
    """``proof`` for re-enrolling a host that reported recently: shows the caller holds its current key."""
    return signature({"purpose": "a4c-enrol", "host_name": host_name, "token": token}, key)
