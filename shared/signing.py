"""HMAC signing of agent traffic (ARCHITECTURE.md decision 5).

Errors::

    SignatureError         the message is unsigned, mis-signed or malformed

Every command to an agent and every event from one is a JSON envelope signed
with the host's key. The signature covers the canonical JSON of the whole
envelope minus ``sig`` (sorted keys, no spaces), so any change to any field,
including the host id, invalidates it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
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
