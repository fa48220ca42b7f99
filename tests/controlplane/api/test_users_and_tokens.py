"""Users and API tokens (admin only): create, issue (shown once, stored hashed), revoke, expire."""

from __future__ import annotations

import hashlib
import uuid

import sqlalchemy as sa


async def test_an_admin_creates_a_user_whose_new_token_works(client, seed):
    admin = await seed.admin()
    name = f"dev{uuid.uuid4().hex[:6]}"
    made = await client(admin.token).post("/v1/users", {"name": name})
    assert made.status == 201 and made.body["role"] == "user" and made.body["name"] == name
    issued = await client(admin.token).post(f"/v1/users/{made.body['id']}/tokens", {"name": "laptop", "expires_in_days": 30})
    assert issued.status == 201 and issued.body["token"].startswith(issued.body["prefix"]) and issued.body["expires_at"] is not None
    me = await client(issued.body["token"]).get("/v1/me")
    assert me.status == 200 and me.body == {"id": made.body["id"], "name": name, "role": "user", "token_id": issued.body["id"]}
    assert (await client(admin.token).get(f"/v1/users/{made.body['id']}")).body["name"] == name
    assert made.body["id"] in {u["id"] for u in (await client(admin.token).get("/v1/users", params={"limit": "500"})).body["items"]}


async def test_tokens_are_stored_only_as_sha256_and_listed_without_the_secret(client, seed):
    admin, user = await seed.admin(), await seed.user()
    issued = (await client(admin.token).post(f"/v1/users/{user.id}/tokens", {})).body
    stored = await seed.scalar(sa.text("SELECT token_hash FROM api_tokens WHERE id = :id"), id=issued["id"])
    assert stored == hashlib.sha256(issued["token"].encode()).hexdigest()
    listed = (await client(admin.token).get(f"/v1/users/{user.id}/tokens")).body["items"]
    assert issued["id"] in {t["id"] for t in listed} and all("token" not in t for t in listed)


async def test_a_revoked_token_stops_working_at_once(client, seed):
    admin, user = await seed.admin(), await seed.user()
    token_id = (await client(user.token).get("/v1/me")).body["token_id"]
    revoked = await client(admin.token).delete(f"/v1/tokens/{token_id}")
    assert revoked.status == 200 and revoked.body["revoked_at"] is not None
    answer = await client(user.token).get("/v1/me")
    assert answer.status == 401 and answer.body["error"]["code"] == "unauthorized"
    again = await client(admin.token).delete(f"/v1/tokens/{token_id}")
    assert again.status == 200 and again.body["revoked_at"] == revoked.body["revoked_at"]


async def test_an_expired_token_is_refused(client, seed):
    user = await seed.user()
    async with seed.sessions() as session, session.begin():
        await session.execute(sa.text("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE user_id = :u"), {"u": user.id})
    assert (await client(user.token).get("/v1/me")).status == 401


async def test_user_routes_are_admin_only_and_validate_their_bodies(client, seed):
    admin, user = await seed.admin(), await seed.user()
    assert (await client(user.token).post("/v1/users", {"name": "sneaky"})).status == 403
    for body, field in [({"name": "Bad Name"}, "name"), ({"name": "ok", "role": "root"}, "role"), ({"name": "ok", "x": 1}, "x")]:
        answer = await client(admin.token).post("/v1/users", body)
        assert answer.status == 422 and answer.error_fields() == [field]
    bad_ttl = await client(admin.token).post(f"/v1/users/{user.id}/tokens", {"expires_in_days": 0})
    assert bad_ttl.status == 422 and bad_ttl.error_fields() == ["expires_in_days"]


async def test_a_taken_user_name_answers_409_and_unknown_users_404(client, seed):
    admin, user = await seed.admin(), await seed.user()
    assert (await client(admin.token).post("/v1/users", {"name": user.name})).status == 409
    missing = uuid.uuid4()
    assert (await client(admin.token).get(f"/v1/users/{missing}")).status == 404
    assert (await client(admin.token).post(f"/v1/users/{missing}/tokens", {})).status == 404
    assert (await client(admin.token).get(f"/v1/users/{missing}/tokens")).status == 404
    assert (await client(admin.token).delete(f"/v1/tokens/{missing}")).status == 404


async def test_an_admin_can_make_another_admin(client, seed):
    admin = await seed.admin()
    made = (await client(admin.token).post("/v1/users", {"name": f"ops{uuid.uuid4().hex[:6]}", "role": "admin"})).body
    token = (await client(admin.token).post(f"/v1/users/{made['id']}/tokens", {})).body["token"]
    assert (await client(token).get("/v1/hosts")).status == 200
