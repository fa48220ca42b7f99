"""Bearer-token authentication, with a short in-process cache.

A validated token is remembered for ``auth.cache_ttl`` seconds, so a GET
costs no authentication query most of the time. Revoking a token on this
instance forgets it at once; other instances stop accepting it within the TTL
(documented in the settings; 0 turns the cache off).
"""

from __future__ import annotations

import asyncio
import time
import typing

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane import settings as cp_settings
from controlplane.services import access, secrets, users

MAX_CACHED = 10_000


class Authenticator:
    def __init__(self, sessions: sa_asyncio.async_sessionmaker, ttl: float, *, clock: typing.Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, access.Principal | None]] = {}
        self._lookups: dict[str, asyncio.Future[access.Principal | None]] = {}

    async def principal(self, token: str) -> access.Principal | None:
        digest = secrets.digest(token)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        # Concurrent requests with the same uncached token share one lookup.
        pending = self._lookups.get(digest)
        if pending is None:
            pending = self._lookups[digest] = asyncio.ensure_future(self._lookup(token, digest, now))
            pending.add_done_callback(lambda _: self._lookups.pop(digest, None))
        return await asyncio.shield(pending)

    async def _lookup(self, token: str, digest: str, now: float) -> access.Principal | None:
        for attempt in range(2):
            try:
                async with self._sessions() as session:
                    found = await users.authenticate(session, token)
                    await session.commit()
                break
            except sa.exc.DBAPIError as exc:
                # Read pool without pre-ping: one retry on a connection the server dropped.
                if attempt or not exc.connection_invalidated:
                    raise
        if self._ttl > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, found)
        return found

    def forget_token(self, token_id: typing.Any) -> None:
        for digest, (_, principal) in list(self._cache.items()):
            if principal is not None and principal.token_id == token_id:
                del self._cache[digest]

    def forget_user(self, user_id: typing.Any) -> None:
        for digest, (_, principal) in list(self._cache.items()):
            if principal is not None and principal.user_id == user_id:
                del self._cache[digest]


def bearer(request: web.Request) -> str | None:
    """The bearer token, None if there is no Authorization header; 401 if it is not a bearer token."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.Unauthorized("expected an 'Authorization: Bearer <token>' header")
    return token


def client_address(request: web.Request, settings: cp_settings.RateLimitSettings) -> str:
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.remote or "unknown"
