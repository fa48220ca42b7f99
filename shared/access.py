"""Grants: the control plane's signed permission for one exec or logs stream on an agent.

Errors::

    GrantError             a grant is unsigned, mis-signed, malformed, stale, replayed or for another host

Users never reach an agent (nor Docker) themselves: the control plane checks
who owns the workspace, then opens a WebSocket to the workspace's agent with
a grant in the ``X-A4C-Grant`` header and relays the frames. A grant is the
JSON below signed with the host's key (the same key the agent checks every
Kafka command with, shared/signing.py), valid for ``max_age`` seconds and
once (its nonce). It names the one container action it allows, so a stolen
grant does nothing else.

Frames on both legs (user <-> control plane <-> agent)::

    binary  first byte = channel, rest = data: 0 stdin (to the agent), 1 stdout, 2 stderr
    text    JSON control: {"resize": [rows, cols]}, {"stdin_eof": true} (to the agent);
            {"exit_code": N} or {"error": "..."} (from the agent, last)
"""

from __future__ import annotations

import base64
import secrets
import time
import typing

import pydantic

from shared import signing

PATH = "/v1/stream"  # where an agent serves streams, under its advertised access URL
HEADER = "X-A4C-Grant"
PURPOSE: typing.Final = "a4c-access"
STDIN, STDOUT, STDERR = 0, 1, 2


class GrantError(Exception):
    """The grant does not allow anything (the message says why)."""


class Grant(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    purpose: typing.Literal["a4c-access"] = PURPOSE
    host_id: str
    workspace_id: str
    action: typing.Literal["exec", "logs"]
    argv: list[str] = pydantic.Field(default_factory=list)
    tty: bool = False
    follow: bool = False
    tail: int | None = pydantic.Field(default=None, ge=0)
    user: str = ""
    issued_at: float = pydantic.Field(default_factory=time.time)
    nonce: str = pydantic.Field(default_factory=lambda: secrets.token_hex(12))


def encode(grant: Grant, key: str) -> str:
    """The header value: the signed grant, urlsafe base64."""
    return base64.urlsafe_b64encode(signing.sign(grant.model_dump(mode="json"), key)).decode()


def decode(value: str, key: str, *, host_id: str, now: float, max_age: float, seen: typing.Container[str]) -> Grant:
    """The grant in a header value, if signed with ``key``, for this host, fresh and not used before."""
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (ValueError, UnicodeError):
        raise GrantError("not base64") from None
    try:
        body = signing.verify(raw, key)
    except signing.SignatureError as exc:
        raise GrantError(str(exc)) from None
    try:
        grant = Grant.model_validate(body)
    except pydantic.ValidationError as exc:
        raise GrantError(f"malformed: {exc.errors()[0]['loc']}") from None
    if grant.host_id != host_id:
        raise GrantError(f"for host {grant.host_id!r}, not this one")
    if abs(now - grant.issued_at) > max_age:
        raise GrantError(f"issued {now - grant.issued_at:.0f} s from now; grants last {max_age:g} s")
    if grant.nonce in seen:
        raise GrantError("already used")
    return grant


def frame(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + data
