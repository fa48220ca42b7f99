"""Typed keys of the API's request path; the application's shared keys are controlplane/appkeys.py, named here too."""

from __future__ import annotations

import asyncio
import typing

from aiohttp import web

from controlplane.appkeys import CONSUMERS, ENGINE, HOT_READS, OPENAPI, READ_ENGINE, READ_SESSIONS, SESSIONS, SETTINGS

# For annotations only: these modules import this one.
if typing.TYPE_CHECKING:
    from controlplane.api import auth, ratelimit, shedding, watches
    from controlplane.services import access

__all__ = [
    "AUTH",
    "CAPS",
    "CONSUMERS",
    "DRAINING",
    "ENGINE",
    "HOT_READS",
    "LIMITER",
    "OPENAPI",
    "PRINCIPAL",
    "READ_ENGINE",
    "READ_SESSIONS",
    "SESSIONS",
    "SETTINGS",
    "WATCHES",
]

AUTH: web.AppKey[auth.Authenticator] = web.AppKey("auth")
LIMITER: web.AppKey[ratelimit.Limits] = web.AppKey("limiter")
CAPS: web.AppKey[shedding.Caps] = web.AppKey("caps")
# Set on SIGTERM (controlplane/api/server.py): /readyz answers 503 from then on.
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining")
WATCHES: web.AppKey[watches.Hub] = web.AppKey("watches")

PRINCIPAL: web.RequestKey[access.Principal | None] = web.RequestKey("principal")
