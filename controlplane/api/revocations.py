"""Revocations reach this instance's token cache at once: LISTEN ``a4c_tokens`` (migration 0010).

A token revoked, deleted or expired early, or a user disabled, re-roled or
deleted, is NOTIFYd at commit as ``token:<id>`` or ``user:<id>``; the
instance forgets what it cached for it (controlplane/api/auth.py). While the
LISTEN connection (controlplane/db/listen.py, shared with the change feed) is
down, and once it listens again, the whole cache is dropped, since a
notification may have been missed: ``auth.cache_ttl`` is then the bound, as
without this module.
"""

from __future__ import annotations

import typing
import uuid

from controlplane.db import listen

if typing.TYPE_CHECKING:
    from controlplane.api import auth

CHANNEL = "a4c_tokens"


def parse(payload: str) -> tuple[str, uuid.UUID] | None:
    """("token" | "user", id) from a notification, None if it is neither. Pure."""
    kind, _, value = payload.partition(":")
    if kind not in ("token", "user"):
        return None
    try:
        return kind, uuid.UUID(value)
    except ValueError:
        return None


def channel(authenticator: auth.Authenticator) -> listen.Channel:
    def notified(payload: str) -> None:
        found = parse(payload)
        if found is None:
            return
        kind, ident = found
        (authenticator.forget_token if kind == "token" else authenticator.forget_user)(ident)

    # Whatever was revoked while nobody listened, and while the connection was being made.
    return listen.Channel(CHANNEL, notified, lost=authenticator.forget_all, listening=authenticator.forget_all)
