"""Hostile and careless input: every one answers 4xx naming what is wrong, never 500.

The 11 inputs that answered 500 before: JSON nested 2,000 levels, search
dates at year 1 or 9999 with an offset (separate parameters and the
search-box text), ``limit`` digits that ``str.isdigit`` takes but ``int``
refuses, and NUL in the CI webhook's ``git_ref`` and ``idempotency_key``.
Then: the nesting limit itself, a body that never finishes (408), a body
that is not declared JSON (415), ``git_url`` schemes, and the last admin token.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import sqlalchemy as sa

from controlplane.db import models
from controlplane.services import users


def nested(levels: int) -> bytes:
    return ("[" * levels + "]" * levels).encode()


def workspace(name: str | None = None) -> dict:
    return {"name": name or f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1}


JSON = {"Content-Type": "application/json"}
SEARCH = "/v1/jobs/search"

# (what, method, path, keyword arguments of Client.request, status, the field named)
ELEVEN = [
    ("JSON nested 2,000 levels", "POST", "/v1/workspaces", {"data": nested(2000), "headers": JSON}, 400, "body"),
    ("created_after at year 1 with an offset", "GET", SEARCH, {"params": {"created_after": "0001-01-01T00:00+01:00"}}, 422, "created_after"),
    ("finished_before at year 9999 with an offset", "GET", SEARCH, {"params": {"finished_before": "9999-12-31T23:59-05:00"}}, 422, "finished_before"),
    ("search-box created>= at year 1 with an offset", "GET", SEARCH, {"params": {"query": "created>=0001-01-01T00:00+01:00"}}, 422, "query"),
    ("search-box created< at year 9999 with an offset", "GET", SEARCH, {"params": {"query": "created<9999-12-31T23:00-05:00"}}, 422, "query"),
    ("search limit=²", "GET", SEARCH, {"params": {"limit": "²"}}, 422, "limit"),
    ("search limit=①", "GET", SEARCH, {"params": {"limit": "①"}}, 422, "limit"),
    ("list limit=²", "GET", "/v1/workspaces", {"params": {"limit": "²"}}, 422, "limit"),
    ("list limit=①", "GET", "/v1/jobs", {"params": {"limit": "①"}}, 422, "limit"),
    ("NUL in the CI webhook's git_ref", "POST", "/v1/ci/builds", {"json": {"image": "base", "git_ref": "main\x00evil"}}, 422, "git_ref"),
    (
        "NUL in the CI webhook's idempotency_key",
        "POST",
        "/v1/ci/builds",
        {"json": {"image": "base", "idempotency_key": "k\x00"}},
        422,
        "idempotency_key",
    ),
]


@pytest.mark.parametrize(("what", "method", "path", "kw", "status", "field"), ELEVEN, ids=[e[0] for e in ELEVEN])
async def test_the_eleven_inputs_that_answered_500_answer_4xx_naming_the_field(client, seed, what, method, path, kw, status, field):
    user = await seed.user()
    answer = await client(user.token).request(method, path, **kw)
    assert answer.status == status, (what, answer.status, answer.body)
    assert field in answer.error_fields(), answer.body


async def test_bodies_nested_past_the_limit_are_refused_and_up_to_it_are_parsed(start_api, http, seed):
    from tests.controlplane.api.conftest import Client

    me = Client(http, await start_api(**{"http.max_json_depth": 8}), (await seed.user()).token)
    too_deep = await me.request("POST", "/v1/workspaces", data=json.dumps({**workspace(), "env": {"A": [[[[[[[["x"]]]]]]]]}}).encode(), headers=JSON)
    assert too_deep.status == 400 and too_deep.error_fields() == ["body"], too_deep.body
    assert "deeper than 8 levels" in too_deep.body["error"]["message"]
    # Eight levels parse; the schema then refuses the shape, naming the field.
    deep_enough = await me.request("POST", "/v1/workspaces", data=json.dumps({**workspace(), "env": {"A": [[[[[["x"]]]]]]}}).encode(), headers=JSON)
    assert deep_enough.status == 422 and deep_enough.error_fields() == ["env.A"], deep_enough.body


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
async def test_a_json_body_under_another_content_type_answers_415_naming_the_expected_type(client, seed, content_type):
    user = await seed.user()
    headers = {"Content-Type": content_type} if content_type else {}
    answer = await client(user.token).request("POST", "/v1/workspaces", data=json.dumps(workspace()).encode(), headers=headers)
    assert answer.status == 415, answer.body
    assert answer.error_fields() == ["Content-Type"] and "application/json" in answer.body["error"]["message"]


async def test_json_with_a_charset_or_a_json_suffix_is_accepted(client, seed):
    user = await seed.user()
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        answer = await client(user.token).request(
            "POST", "/v1/workspaces", data=json.dumps(workspace()).encode(), headers={"Content-Type": content_type}
        )
        assert answer.status == 202, (content_type, answer.body)


async def test_a_body_that_never_finishes_answers_408_naming_body(start_api, seed):
    base = await start_api(**{"http.body_timeout": 0.5})
    user = await seed.user()
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
            + f"Authorization: Bearer {user.token}\r\n\r\n".encode()
            + b'{"name": '
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 408 "), head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 30))
        assert [f["path"] for f in body["error"]["fields"]] == ["body"], body
    finally:
        writer.close()


@pytest.mark.parametrize("url", ["file:///etc", "file://localhost/srv/repo.git", "http://git.example/repo.git", "git://git.example/repo.git"])
async def test_git_url_outside_https_and_ssh_answers_422_naming_git_url(client, seed, url):
    user = await seed.user()
    answer = await client(user.token).post("/v1/images", {"name": f"img-{uuid.uuid4().hex[:8]}", "git_url": url})
    assert answer.status == 422 and answer.error_fields() == ["git_url"], answer.body
    assert "https or ssh" in answer.body["error"]["message"]


@pytest.mark.parametrize("url", ["https://git.example/repo.git", "ssh://git@git.example/repo.git", "git@git.example:team/repo.git"])
async def test_git_url_over_https_or_ssh_is_accepted(client, seed, url):
    user = await seed.user()
    answer = await client(user.token).post("/v1/images", {"name": f"img-{uuid.uuid4().hex[:8]}", "git_url": url})
    assert answer.status == 201 and answer.body["git_url"] == url, answer.body


async def test_other_git_url_schemes_are_a_setting(start_api, http, seed):
    from tests.controlplane.api.conftest import Client

    me = Client(http, await start_api(**{"api.git_url_schemes": ["https", "ssh", "file"]}), (await seed.user()).token)
    answer = await me.post("/v1/images", {"name": f"img-{uuid.uuid4().hex[:8]}", "git_url": "file:///srv/repo.git"})
    assert answer.status == 201, answer.body


async def test_the_last_admin_token_cannot_be_revoked(client, seed):
    admin = await seed.admin()
    async with seed.sessions() as session, session.begin():
        spare = await users.issue_token(session, admin.id, name="spare")
        # Only this admin's two tokens stay live (other tests' admins lose theirs).
        await session.execute(
            sa.update(models.ApiToken)
            .where(models.ApiToken.user_id != admin.id, models.ApiToken.revoked_at.is_(None))
            .where(models.ApiToken.user_id.in_(sa.select(models.User.id).where(models.User.role == models.Role.ADMIN)))
            .values(revoked_at=sa.func.now())
        )
    me = client(admin.token)
    tokens = {t["name"]: t["id"] for t in (await me.get(f"/v1/users/{admin.id}/tokens")).body["items"]}
    assert (await me.delete(f"/v1/tokens/{spare.row.id}")).status == 200
    last = await me.delete(f"/v1/tokens/{tokens['test']}")
    assert last.status == 409 and last.body["error"]["code"] == "last_admin_token", last.body
    assert "issue another admin token first" in last.body["error"]["message"]
    assert (await me.get("/v1/me")).status == 200
    # With another admin token issued, the old one may go.
    fresh = await me.post(f"/v1/users/{admin.id}/tokens", {"name": "next"})
    assert fresh.status == 201
    assert (await me.delete(f"/v1/tokens/{tokens['test']}")).status == 200
    assert (await client(fresh.body["token"]).get("/v1/me")).status == 200


async def test_concurrent_revocations_of_the_last_two_admin_tokens_leave_one(client, seed):
    admin = await seed.admin()
    async with seed.sessions() as session, session.begin():
        other = await users.issue_token(session, admin.id, name="other")
        await session.execute(
            sa.update(models.ApiToken)
            .where(models.ApiToken.user_id != admin.id, models.ApiToken.revoked_at.is_(None))
            .where(models.ApiToken.user_id.in_(sa.select(models.User.id).where(models.User.role == models.Role.ADMIN)))
            .values(revoked_at=sa.func.now())
        )
    me = client(admin.token)
    ids = [t["id"] for t in (await me.get(f"/v1/users/{admin.id}/tokens")).body["items"] if t["revoked_at"] is None]
    assert str(other.row.id) in ids and len(ids) == 2
    answers = await asyncio.gather(*(me.delete(f"/v1/tokens/{token_id}") for token_id in ids))
    assert sorted(a.status for a in answers) == [200, 409], [a.body for a in answers]
