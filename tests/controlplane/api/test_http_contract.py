"""What every route promises: 401/403, 413, 429 with Retry-After, idempotent retries, JSON errors, ops endpoints."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
import sqlalchemy as sa

from controlplane.api import app as api_app
from tests.controlplane.api.conftest import Client
from tests.harness import ports

ENDPOINTS = api_app.endpoints()


def concrete(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)


def workspace_body(name: str | None = None) -> dict:
    return {"name": name or f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1}


@pytest.mark.parametrize("ep", [e for e in ENDPOINTS if e.auth != "public"], ids=lambda e: f"{e.method} {e.path}")
async def test_every_protected_route_answers_401_without_a_valid_token(client, ep):
    for token in (None, "a4c_not-a-real-token"):
        answer = await client(token).request(ep.method, concrete(ep.path), json={} if ep.body else None)
        assert answer.status == 401, answer.body
        assert answer.body["error"]["code"] == "unauthorized" and answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("ep", [e for e in ENDPOINTS if e.auth == "admin"], ids=lambda e: f"{e.method} {e.path}")
async def test_every_admin_route_answers_403_to_a_plain_user(client, seed, ep):
    user = await seed.user()
    answer = await client(user.token).request(ep.method, concrete(ep.path), json={} if ep.body else None)
    assert answer.status == 403 and answer.body["error"]["code"] == "forbidden"


@pytest.mark.parametrize("ep", [e for e in ENDPOINTS if e.body is not None], ids=lambda e: f"{e.method} {e.path}")
async def test_every_body_refuses_an_unknown_field_by_name(client, seed, ep):
    admin = await seed.admin()
    answer = await client(admin.token).request(ep.method, concrete(ep.path), json={"surprise_field": 1})
    assert answer.status == 422, answer.body
    assert "surprise_field" in answer.error_fields() and answer.body["error"]["code"] == "invalid"


@pytest.mark.parametrize("ep", [e for e in ENDPOINTS if e.query is not None], ids=lambda e: f"{e.method} {e.path}")
async def test_every_list_validates_its_query_naming_the_parameter(client, seed, ep):
    admin = await seed.admin()
    for params, field in [({"limit": "0"}, "limit"), ({"cursor": "not-a-cursor"}, "cursor"), ({"surprise": "1"}, "surprise")]:
        answer = await client(admin.token).get(concrete(ep.path), params=params)
        assert answer.status == 422 and field in answer.error_fields(), (params, answer.body)


# Routes a plain user calls on one object named in the path; admin-only routes
# are out (an admin sees everyone's objects, a user gets 403 there).
USER_ROUTES_ON_AN_OBJECT = [e for e in ENDPOINTS if e.auth == "user" and "{" in e.path]
VALID_BODIES = {
    ("POST", "/v1/images/{image_id}/schedules"): {"cron": "0 3 * * *"},
    ("PATCH", "/v1/images/{image_id}"): {"build_args": {"V": "2"}},
    ("PATCH", "/v1/images/{image_id}/schedules/{schedule_id}"): {"enabled": False},
}

VALID_QUERIES = {
    ("GET", "/v1/workspaces/{workspace_id}/exec"): {"command": '["id"]'},
}


async def objects_owned_by(me: Client) -> dict[str, str]:
    """One object of every kind a path names, owned by the caller: path parameter -> id."""
    created = (await me.post("/v1/workspaces", workspace_body())).body
    image = (await me.post("/v1/images", {"name": f"img-{uuid.uuid4().hex[:8]}", "dockerfile": "FROM busybox"})).body
    schedule = (await me.post(f"/v1/images/{image['id']}/schedules", {"cron": "0 3 * * *"})).body
    return {"workspace_id": created["workspace"]["id"], "job_id": created["job"]["id"], "image_id": image["id"], "schedule_id": schedule["id"]}


@pytest.mark.parametrize("ep", USER_ROUTES_ON_AN_OBJECT, ids=lambda e: f"{e.method} {e.path}")
async def test_every_route_naming_another_users_object_answers_404_while_its_owner_is_served(client, seed, ep):
    owner, intruder = await seed.user(), await seed.user()
    ids = await objects_owned_by(client(owner.token))
    path = ep.path.format(**ids)  # a KeyError: a new kind of object this test must learn to make
    assert ep.body is None or (ep.method, ep.path) in VALID_BODIES, "give this route a valid body in VALID_BODIES"
    body = VALID_BODIES.get((ep.method, ep.path))
    params = VALID_QUERIES.get((ep.method, ep.path))

    refused = await client(intruder.token).request(ep.method, path, json=body, params=params)
    assert refused.status == 404 and refused.body["error"]["code"] == "not_found", refused.body
    assert owner.name not in str(refused.body) and str(owner.id) not in str(refused.body)
    # The owner's identical call is not a 404 (200, 202, 204, or a 409 about the
    # object's state): the ids are real, and the intruder's call changed nothing that hides it.
    served = await client(owner.token).request(ep.method, path, json=body, params=params)
    assert served.status != 404 and served.status < 500, served.body


async def test_a_malformed_authorization_header_answers_401_saying_what_is_expected(client):
    answer = await client().get("/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert answer.status == 401 and "Bearer" in answer.body["error"]["message"]


async def test_a_body_over_the_configured_size_answers_413(start_api, http, seed):
    base = await start_api(**{"http.max_body_bytes": 2048})
    user = await seed.user()
    me = Client(http, base, user.token)
    big = {**workspace_body(), "env": {"PADDING": "x" * 4000}}
    answer = await me.post("/v1/workspaces", big)
    assert answer.status == 413 and answer.body["error"]["code"] == "too_large" and "2048" in answer.body["error"]["message"]

    async def chunks():
        for _ in range(8):
            yield b"x" * 1024

    # Without Content-Length (chunked), the limit applies while reading.
    streamed = await me.request("POST", "/v1/workspaces", data=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status == 413 and streamed.body["error"]["code"] == "too_large"
    assert (await me.post("/v1/workspaces", workspace_body())).status == 202


async def test_a_token_over_its_rate_answers_429_with_retry_after_while_others_are_served(start_api, http, seed):
    base = await start_api(**{"rate_limit.per_token_rps": 0.2, "rate_limit.per_token_burst": 3})
    hasty, calm = await seed.user(), await seed.user()
    answers = [await Client(http, base, hasty.token).get("/v1/me") for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.body["error"]["code"] == "rate_limited" and 1 <= int(limited.headers["Retry-After"]) <= 5
    assert (await Client(http, base, calm.token).get("/v1/me")).status == 200


async def test_unauthenticated_calls_are_limited_per_address(start_api, http):
    base = await start_api(**{"rate_limit.anonymous_rps": 0.1, "rate_limit.anonymous_burst": 2})
    anonymous = Client(http, base)
    statuses = [(await anonymous.get("/v1/openapi.json")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Health probes are never limited.
    assert [(await anonymous.get("/healthz")).status for _ in range(5)] == [200] * 5


async def test_a_retry_with_the_same_idempotency_key_replays_the_answer_on_any_instance(start_api, http, seed, database_url):
    first_base, second_base = await start_api(), await start_api()
    user = await seed.user()
    key = str(uuid.uuid4())
    body = workspace_body()
    first = await Client(http, first_base, user.token).post("/v1/workspaces", body, headers={"Idempotency-Key": key})
    second = await Client(http, second_base, user.token).post("/v1/workspaces", body, headers={"Idempotency-Key": key})
    assert first.status == second.status == 202
    assert second.body == first.body and second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    count = await seed.scalar(sa.text("SELECT count(*) FROM workspaces WHERE owner_id = :owner"), owner=user.id)
    assert count == 1


async def test_concurrent_retries_with_one_key_create_exactly_one_workspace(start_api, http, seed):
    bases = [await start_api(), await start_api()]
    user = await seed.user()
    key = str(uuid.uuid4())
    body = workspace_body()
    answers = await asyncio.gather(
        *(Client(http, bases[i % 2], user.token).post("/v1/workspaces", body, headers={"Idempotency-Key": key}) for i in range(10))
    )
    assert {a.status for a in answers} == {202}
    assert len({a.body["workspace"]["id"] for a in answers}) == 1
    assert sum(1 for a in answers if a.headers.get("Idempotent-Replayed") != "true") == 1
    jobs = await seed.scalar(sa.text("SELECT count(*) FROM jobs WHERE user_id = :owner"), owner=user.id)
    assert jobs == 1


async def test_an_idempotency_key_reused_for_a_different_request_answers_422(client, seed):
    user = await seed.user()
    me = client(user.token)
    key = str(uuid.uuid4())
    assert (await me.post("/v1/workspaces", workspace_body(), headers={"Idempotency-Key": key})).status == 202
    answer = await me.post("/v1/workspaces", workspace_body(), headers={"Idempotency-Key": key})
    assert answer.status == 422 and answer.error_fields() == ["Idempotency-Key"]
    assert answer.body["error"]["code"] == "idempotency_key_reused"


async def test_keys_are_per_user(client, seed):
    one, two = await seed.user(), await seed.user()
    key = str(uuid.uuid4())
    body = workspace_body()
    a = await client(one.token).post("/v1/workspaces", body, headers={"Idempotency-Key": key})
    b = await client(two.token).post("/v1/workspaces", body, headers={"Idempotency-Key": key})
    assert a.status == b.status == 202 and a.body["workspace"]["id"] != b.body["workspace"]["id"]


async def test_a_request_that_failed_leaves_its_key_free_for_a_real_retry(client, seed):
    user = await seed.user()
    me = client(user.token)
    body = workspace_body()
    assert (await me.post("/v1/workspaces", body)).status == 202
    key = str(uuid.uuid4())
    clash = await me.post("/v1/workspaces", body, headers={"Idempotency-Key": key})
    assert clash.status == 409
    await me.delete(f"/v1/workspaces/{(await me.get('/v1/workspaces', params={'name': body['name']})).body['items'][0]['id']}")
    retried = await me.post("/v1/workspaces", body, headers={"Idempotency-Key": key})
    assert retried.status == 202 and "Idempotent-Replayed" not in retried.headers


async def test_a_replayed_secret_is_refused_and_not_issued_twice(client, seed):
    admin = await seed.admin()
    target = await seed.user()
    me = client(admin.token)
    key = str(uuid.uuid4())
    first = await me.post(f"/v1/users/{target.id}/tokens", {"name": "ci"}, headers={"Idempotency-Key": key})
    assert first.status == 201 and first.body["token"].startswith("a4c_")
    again = await me.post(f"/v1/users/{target.id}/tokens", {"name": "ci"}, headers={"Idempotency-Key": key})
    assert again.status == 409 and again.body["error"]["code"] == "idempotent_secret"
    assert first.body["id"] in again.body["error"]["message"]
    tokens = (await me.get(f"/v1/users/{target.id}/tokens")).body["items"]
    assert [t["name"] for t in tokens].count("ci") == 1
    stored = await seed.scalar(sa.text("SELECT response::text FROM idempotency_keys WHERE key = :key"), key=key)
    assert first.body["token"] not in stored


async def test_a_bad_idempotency_key_answers_422_naming_the_header(client, seed):
    user = await seed.user()
    answer = await client(user.token).post("/v1/workspaces", workspace_body(), headers={"Idempotency-Key": "x" * 201})
    assert answer.status == 422 and answer.error_fields() == ["Idempotency-Key"]


async def test_a_body_that_is_not_json_answers_400(client, seed):
    user = await seed.user()
    me = client(user.token)
    for raw in (b"{not json", b""):
        answer = await me.request("POST", "/v1/workspaces", data=raw, headers={"Content-Type": "application/json"})
        assert answer.status == 400 and answer.body["error"]["code"] == "malformed" and answer.error_fields() == ["body"]
    not_an_object = await me.post("/v1/workspaces", [1, 2])
    assert not_an_object.status == 422 and not_an_object.error_fields() == ["body"]


async def test_unknown_routes_and_methods_answer_json_errors(client, seed):
    user = await seed.user()
    me = client(user.token)
    missing = await me.get("/v1/nothing-here")
    assert missing.status == 404 and missing.body["error"]["code"] == "not_found"
    not_a_uuid = await me.get("/v1/workspaces/not-a-uuid")
    assert not_a_uuid.status == 404 and not_a_uuid.body["error"]["code"] == "not_found"
    wrong = await me.request("PUT", "/v1/workspaces")
    assert wrong.status == 405 and "GET" in wrong.headers["Allow"] and wrong.body["error"]["code"] == "method_not_allowed"


async def test_health_readiness_and_metrics_need_no_token(client, seed):
    await seed.host()
    anonymous = client()
    assert (await anonymous.get("/healthz")).body == {"status": "ok"}
    assert (await anonymous.get("/readyz")).body == {"status": "ready", "database": "ok"}
    scraped = await anonymous.get("/metrics")
    assert scraped.status == 200
    assert re.search(r'a4c_http_requests_total\{method="GET",route="/healthz",status="200"\} [1-9]', scraped.body)
    assert 'a4c_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/readyz",status="200"}' in scraped.body
    assert re.search(r'a4c_hosts\{status="active"\} [1-9]', scraped.body)
    assert 'a4c_jobs_live{status="pending"}' in scraped.body and 'a4c_workspaces{state="running"}' in scraped.body


async def test_metrics_label_requests_by_route_template_not_by_concrete_path(client, seed):
    user = await seed.user()
    await client(user.token).get(f"/v1/workspaces/{uuid.uuid4()}")
    scraped = (await client().get("/metrics")).body
    assert 'route="/v1/workspaces/{workspace_id}",status="404"' in scraped


async def test_readiness_fails_with_503_when_the_database_is_unreachable(start_api, http):
    base = await start_api(**{"database.url": f"postgresql://postgres@127.0.0.1:{ports.free_port()}/nowhere"})
    anonymous = Client(http, base)
    assert (await anonymous.get("/healthz")).status == 200
    answer = await anonymous.get("/readyz")
    assert answer.status == 503 and answer.body["error"]["code"] == "unavailable"
    # An authenticated call cannot be checked either: 503, not a traceback.
    assert (await Client(http, base, "a4c_whatever").get("/v1/me")).status == 503


async def test_metrics_behind_a_token_answer_only_a_scraper_that_presents_it(start_api, http, tmp_path):
    token_file = tmp_path / "metrics-token"
    token_file.write_text("scrape-me\n")
    base = await start_api(**{"http.metrics_token_file": str(token_file)})
    assert (await Client(http, base).get("/metrics")).status == 401
    assert (await Client(http, base, "not-it").get("/metrics")).status == 401
    scraped = await Client(http, base, "scrape-me").get("/metrics")
    assert scraped.status == 200 and "a4c_http_requests_total" in scraped.body
    assert (await Client(http, base).get("/healthz")).status == 200, "health and readiness stay public"


async def test_the_openapi_document_describes_every_route_and_its_errors(client):
    doc = (await client().get("/v1/openapi.json")).body
    assert doc["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(e.method, e.path) for e in ENDPOINTS}
    create = doc["paths"]["/v1/workspaces"]["post"]
    assert {"202", "400", "401", "409", "413", "422", "429"} <= set(create["responses"])
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/WorkspaceCreate"}
    assert doc["components"]["schemas"]["WorkspaceCreate"]["additionalProperties"] is False
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    assert doc["paths"]["/v1/workspaces"]["get"]["responses"]["429"]["headers"]["Retry-After"]["required"] is True


async def test_reads_and_writes_survive_the_database_dropping_pooled_connections(start_api, http, seed):
    user = await seed.user()
    # No token cache: authentication itself reads through the dropped connections too.
    me = Client(http, await start_api(**{"auth.cache_ttl": 0}), user.token)
    first = await me.post("/v1/workspaces", workspace_body())
    assert (await me.get(f"/v1/workspaces/{first.body['workspace']['id']}")).status == 200
    dropped = await seed.scalar(
        sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'a4c-controlplane'"
        )
    )
    assert dropped >= 2  # the read pool's and the write pool's connections
    # The create first: its two statements go on the hot pool's connections, which the GET would otherwise renew.
    assert (await me.post("/v1/workspaces", workspace_body())).status == 202
    assert (await me.get(f"/v1/workspaces/{first.body['workspace']['id']}")).status == 200
