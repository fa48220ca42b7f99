"""Bearer-token authentication, with short in-process caches and a per-address limit on lookups.

A validated token is remembered for ``auth.cache_ttl`` seconds, so a GET
costs no authentication query most of the time. Revoking a token on this
instance forgets it at once (after the commit); other instances forget it
when the NOTIFY arrives (controlplane/api/revocations.py), and within the TTL
at the latest (documented in the settings; 0 turns the cache off). Unknown tokens are
remembered apart, for the same TTL: both caches are bounded LRUs, so a flood
of made-up tokens evicts only older unknown ones, never a valid token. A
token in neither cache costs a database lookup, and those are limited per
client address (``rate_limit.lookups_per_address_*``): past the limit the
request answers 429 before any lookup (controlplane/api/middleware.py).
Re-checking a token that was valid when last looked up (its entry expired
but not yet evicted) is not charged to the address, so users sharing an
address with a flood of made-up tokens keep working.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
import typing

import prometheus_client
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane import settings as cp_settings
from controlplane.services import access, secrets, users

if typing.TYPE_CHECKING:
    from controlplane.api import ratelimit

MAX_CACHED = 10_000

LOOKUPS = prometheus_client.Counter("a4c_auth_lookups_total", "API tokens looked up in the database, by result", ["result"])
LOOKUPS_REFUSED = prometheus_client.Counter(
    "a4c_auth_lookups_refused_total", "Requests refused (429) before a token lookup: the address's lookup budget was spent"
)


class _Lru:
    """A bounded map of digest -> (expiry, value); the least recently used entry goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: collections.OrderedDict[str, tuple[float, typing.Any]] = collections.OrderedDict()

    def get(self, key: str, now: float) -> tuple[bool | None, typing.Any]:
        """(True, value) while fresh, (False, value) once expired (kept until evicted), (None, None) if absent."""
        hit = self._items.get(key)
        if hit is None:
            return None, None
        self._items.move_to_end(key)
        return hit[0] > now, hit[1]

    def put(self, key: str, until: float, value: typing.Any) -> None:
        self._items[key] = (until, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def drop(self, predicate: typing.Callable[[typing.Any], bool]) -> None:
        for key in [k for k, (_, v) in self._items.items() if predicate(v)]:
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


class Authenticator:
    def __init__(
        self,
        sessions: sa_asyncio.async_sessionmaker,
        ttl: float,
        *,
        size: int = MAX_CACHED,
        lookups: ratelimit.Limiter | None = None,
        clock: typing.Callable[[], float] = time.monotonic,
        lookup_timeout: float | None = None,
    ) -> None:
        self._sessions = sessions
        self._lookup_timeout = lookup_timeout
        self._ttl = ttl
        self._clock = clock
        self._known = _Lru(size)
        self._unknown = _Lru(size)
        self._limit = lookups
        self._lookups: dict[str, asyncio.Future[access.Principal | None]] = {}
        # Bumped by every forget: a lookup that began before one may have read the row as it was, so it is
        # answered but not remembered (else a revoked token could be cached again by a lookup in flight).
        self._generation = 0

    async def principal(self, token: str, *, address: str | None = None) -> access.Principal | None:
        """Who ``token`` is (None: unknown); RateLimited if it needs a lookup and ``address`` has none left."""
        digest = secrets.digest(token)
        now = self._clock()
        fresh, found = self._known.get(digest, now)
        if fresh:
            return typing.cast(access.Principal, found)
        known_before = fresh is not None  # valid when last looked up: its refresh is not charged to the address
        if not known_before and self._unknown.get(digest, now)[0]:
            return None
        # Concurrent requests with the same uncached token share one lookup.
        pending = self._lookups.get(digest)
        if pending is None:
            if self._limit is not None and address is not None and not known_before:
                wait = self._limit.take(address)
                if wait > 0:
                    LOOKUPS_REFUSED.inc()
                    seconds = max(1, math.ceil(wait))
                    raise errors.RateLimited(f"too many unrecognised tokens from this address; retry in {seconds}s", retry_after=seconds)
            pending = self._lookups[digest] = asyncio.ensure_future(self._lookup(token, digest, now))
            pending.add_done_callback(lambda _: self._lookups.pop(digest, None))
        return await asyncio.shield(pending)

    async def _lookup(self, token: str, digest: str, now: float) -> access.Principal | None:
        # Bounded: a hung database must answer 503 within seconds, not hold every request for the outage.
        try:
            async with asyncio.timeout(self._lookup_timeout):
                return await self._look_up(token, digest, now)
        except TimeoutError:
            LOOKUPS.labels("timeout").inc()
            raise errors.Unavailable(
                f"the token could not be checked: the database did not answer within {self._lookup_timeout:g} s; retry later"
            ) from None

    async def _look_up(self, token: str, digest: str, now: float) -> access.Principal | None:
        generation = self._generation
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
        LOOKUPS.labels("known" if found is not None else "unknown").inc()
        if self._ttl > 0 and (found is None or generation == self._generation):
            if found is None:
                self._known.pop(digest)
            (self._known if found is not None else self._unknown).put(digest, now + self._ttl, found)
        return found

    def forget_token(self, token_id: typing.Any) -> None:
        self._generation += 1
        self._known.drop(lambda p: p.token_id == token_id)

    def forget_all(self) -> None:
        """Every cached valid token is looked up again (revocations may have been missed, controlplane/api/revocations.py)."""
        self._generation += 1
        self._known.drop(lambda _p: True)

    def forget_user(self, user_id: typing.Any) -> None:
        self._generation += 1
        self._known.drop(lambda p: p.user_id == user_id)


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
