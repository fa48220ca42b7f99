"""Revoking a token reaches every instance within the documented bound (auth.cache_ttl, controlplane/api/auth.py):
the instance that revoked refuses it at once, another one, which remembers the token as valid, within the TTL.

Two control-plane instances on one real PostgreSQL; the bound is made small here so the test is quick.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from tests.harness import wait

TTL = 1.0


async def test_a_revoked_token_is_refused_at_once_where_it_was_revoked_and_within_the_cache_ttl_elsewhere(start_api, http, seed):
    from tests.controlplane.api.conftest import Client

    a = Client(http, await start_api(**{"auth.cache_ttl": TTL}))
    b = Client(http, await start_api(**{"auth.cache_ttl": TTL}))
    user, admin = await seed.user(), await seed.admin()
    me_a, me_b = a.as_(user.token), b.as_(user.token)
    token_id = (await me_a.get("/v1/me")).body["token_id"]
    # Both instances now remember the token as valid.
    assert (await me_b.get("/v1/me")).status == 200
    assert (await me_a.get("/v1/me")).status == 200

    revoked = await a.as_(admin.token).delete(f"/v1/tokens/{token_id}")
    assert revoked.status == 200
    began = time.monotonic()
    refused = await me_a.get("/v1/me")
    assert refused.status == 401 and refused.body["error"]["code"] == "unauthorized"

    async def b_refuses() -> bool:
        return (await me_b.get("/v1/me")).status == 401

    await wait.eventually(b_refuses, timeout=TTL + 5, interval=0.05, message="instance B still accepts the revoked token")
    took = time.monotonic() - began
    # The bound plus scheduling slack on a loaded machine; never the cache's natural lifetime of many TTLs.
    assert took <= TTL + 1.0, f"B refused the token {took:.2f} s after the revocation; the bound is {TTL} s"
    assert (await me_a.get("/v1/me")).status == 401


async def test_other_instances_forget_a_revoked_token_or_a_disabled_user_when_the_notify_arrives_well_before_the_ttl(start_api, http, seed):
    """With a long TTL, only the NOTIFY (migration 0010, controlplane/api/revocations.py) can make B refuse soon."""
    from tests.controlplane.api.conftest import Client

    long_ttl = 60.0
    a = Client(http, await start_api(**{"auth.cache_ttl": long_ttl}))
    b = Client(http, await start_api(**{"auth.cache_ttl": long_ttl}))
    admin = await seed.admin()
    revoked_user, disabled_user = await seed.user(), await seed.user()

    async def cached_on_b(token: str) -> bool:
        # B looked the token up after its LISTEN was in place (it drops its cache when it starts listening).
        return (await b.as_(token).get("/v1/me")).status == 200

    for user in (revoked_user, disabled_user):
        await wait.eventually(lambda user=user: cached_on_b(user.token), timeout=10, message="B does not accept a fresh token")

    token_id = (await a.as_(revoked_user.token).get("/v1/me")).body["token_id"]
    assert (await a.as_(admin.token).delete(f"/v1/tokens/{token_id}")).status == 200
    began = time.monotonic()

    async def b_refuses(token: str) -> bool:
        return (await b.as_(token).get("/v1/me")).status == 401

    await wait.eventually(lambda: b_refuses(revoked_user.token), timeout=10, message="B still accepts the revoked token")
    assert time.monotonic() - began < 5.0, "B refused only after the NOTIFY should have reached it"

    async with seed.sessions() as session, session.begin():
        await session.execute(sa.text("UPDATE users SET disabled = true WHERE id = :id"), {"id": disabled_user.id})
    await wait.eventually(lambda: b_refuses(disabled_user.token), timeout=10, message="B still accepts a disabled user's token")
