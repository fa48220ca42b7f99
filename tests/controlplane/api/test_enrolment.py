"""Agent enrolment: admins issue enrolment tokens; an agent trades one for its host id and signing key."""

from __future__ import annotations

import datetime
import uuid

import sqlalchemy as sa

from controlplane.services import workspaces
from shared import messages, signing
from tests.controlplane.api.conftest import settings_for


def enrol_body(token: str, host_name: str | None = None, **fields):
    return {
        "token": token,
        "host_name": host_name or f"node-{uuid.uuid4().hex[:8]}.example",
        "labels": {"rack": "r1"},
        "capacity": {"cpus": 16, "memory_mb": 65_536, "disk_bytes": 500 * 1024**3},
        "agent_version": "0.1.0",
        **fields,
    }


async def issue(client, admin, **body) -> dict:
    answer = await client(admin.token).post("/v1/enrolment-tokens", body)
    assert answer.status == 201, answer.body
    return answer.body


async def test_an_agent_enrols_with_a_token_and_gets_its_host_id_and_key(client, seed):
    admin = await seed.admin()
    grant = await issue(client, admin, description="rack r1")
    assert grant["token"].startswith(grant["prefix"]) and grant["uses"] == 0
    body = enrol_body(grant["token"])
    answer = await client().post("/v1/agents/enrol", body)
    assert answer.status == 201
    host_id, key = answer.body["host_id"], answer.body["key"]
    host = (await client(admin.token).get(f"/v1/hosts/{host_id}")).body
    assert host["name"] == body["host_name"] and host["labels"] == {"rack": "r1"} and host["capacity"]["cpus"] == 16
    assert host["status"] == "active" and host["last_heartbeat_at"] is not None
    stored_key = await seed.scalar(sa.text("SELECT signing_key FROM hosts WHERE id = :id"), id=host_id)
    assert stored_key == key
    # The key is the one the relay will sign this host's commands with.
    wire = messages.encode(messages.CommandKind.HOST_CLEANUP, host_id, 1, messages.CleanupCommand(), stored_key)
    assert signing.verify(wire, key)["host_id"] == host_id
    recorded = await seed.all(sa.text("SELECT host_id, remote_addr FROM enrolments WHERE token_id = :t"), t=grant["id"])
    assert [(str(r.host_id), r.remote_addr) for r in recorded] == [(host_id, "127.0.0.1")]
    tokens = (await client(admin.token).get("/v1/enrolment-tokens")).body["items"]
    assert next(t for t in tokens if t["id"] == grant["id"])["uses"] == 1


async def test_enrolling_a_known_host_name_again_keeps_its_id_and_issues_a_new_key(client, seed):
    admin = await seed.admin()
    grant = await issue(client, admin, max_uses=2)
    name = f"node-{uuid.uuid4().hex[:8]}"
    first = (await client().post("/v1/agents/enrol", enrol_body(grant["token"], name))).body
    await _quiet(seed, first["host_id"])  # a reinstalled server: no heartbeat for a while
    second = (await client().post("/v1/agents/enrol", enrol_body(grant["token"], name, agent_version="0.2.0"))).body
    assert second["host_id"] == first["host_id"] and second["key"] != first["key"]
    assert (await client(admin.token).get(f"/v1/hosts/{first['host_id']}")).body["agent_version"] == "0.2.0"


async def _quiet(seed, host_id: str) -> None:
    async with seed.sessions() as session, session.begin():
        await session.execute(sa.text("UPDATE hosts SET last_heartbeat_at = now() - interval '1 hour' WHERE id = :id"), {"id": host_id})


async def test_re_enrolling_a_host_that_reported_recently_needs_an_admins_force_or_proof_of_its_key(client, seed):
    admin, user = await seed.admin(), await seed.user()
    grant = await issue(client, admin, max_uses=10)
    name = f"node-{uuid.uuid4().hex[:8]}"
    first = (await client().post("/v1/agents/enrol", enrol_body(grant["token"], name))).body

    refused = await client().post("/v1/agents/enrol", enrol_body(grant["token"], name))
    assert refused.status == 409 and refused.body["error"]["code"] == "host_recently_active", refused.body
    assert f"host {name!r} reported" in refused.body["error"]["message"] and "force" in refused.body["error"]["message"]
    for who in (None, user.token):  # force is an admin's: nobody else may set it
        answer = await client(who).post("/v1/agents/enrol", enrol_body(grant["token"], name, force=True))
        assert answer.status == 403 and "force" in answer.body["error"]["message"], answer.body
    wrong = await client().post("/v1/agents/enrol", enrol_body(grant["token"], name, proof=signing.enrolment_proof(name, grant["token"], "x" * 43)))
    assert wrong.status == 401 and wrong.body["error"]["code"] == "enrolment_proof_invalid"
    key = await seed.scalar(sa.text("SELECT signing_key FROM hosts WHERE id = :id"), id=first["host_id"])
    assert key == first["key"], "nothing refused changed the key"

    forced = await client(admin.token).post("/v1/agents/enrol", enrol_body(grant["token"], name, force=True))
    assert forced.status == 201 and forced.body["host_id"] == first["host_id"] and forced.body["key"] != first["key"]
    proven = await client().post(
        "/v1/agents/enrol", enrol_body(grant["token"], name, proof=signing.enrolment_proof(name, grant["token"], forced.body["key"]))
    )
    assert proven.status == 201 and proven.body["host_id"] == first["host_id"]
    assert await seed.scalar(sa.text("SELECT signing_key FROM hosts WHERE id = :id"), id=first["host_id"]) == proven.body["key"]


async def test_an_enrolment_token_enrols_once_and_expires_within_the_hour_unless_the_admin_asks_for_more(client, seed):
    admin = await seed.admin()
    grant = await issue(client, admin)
    assert grant["max_uses"] == 1
    created, expires = (datetime.datetime.fromisoformat(grant[k]) for k in ("created_at", "expires_at"))
    assert (expires - created).total_seconds() == 3600
    assert (await client().post("/v1/agents/enrol", enrol_body(grant["token"]))).status == 201
    again = await client().post("/v1/agents/enrol", enrol_body(grant["token"]))
    assert again.status == 401 and again.body["error"]["code"] == "enrolment_token_used_up"
    fleet = await issue(client, admin, max_uses=500, expires_in_seconds=7 * 86_400)
    created, expires = (datetime.datetime.fromisoformat(fleet[k]) for k in ("created_at", "expires_at"))
    assert fleet["max_uses"] == 500 and (expires - created).total_seconds() == 7 * 86_400


async def test_a_revoked_expired_used_up_or_unknown_token_enrols_nothing_and_says_why(client, seed):
    admin = await seed.admin()
    revoked = await issue(client, admin)
    assert (await client(admin.token).delete(f"/v1/enrolment-tokens/{revoked['id']}")).body["revoked_at"] is not None
    single = await issue(client, admin, max_uses=1)
    assert (await client().post("/v1/agents/enrol", enrol_body(single["token"]))).status == 201
    expired = await issue(client, admin, expires_in_seconds=3600)
    async with seed.sessions() as session, session.begin():
        await session.execute(sa.text("UPDATE enrolment_tokens SET expires_at = now() - interval '1 s' WHERE id = :id"), {"id": expired["id"]})
    hosts_before = await seed.scalar(sa.text("SELECT count(*) FROM hosts"))
    for token, code, words in [
        (revoked["token"], "enrolment_token_revoked", "revoked"),
        (single["token"], "enrolment_token_used_up", "used up"),
        (expired["token"], "enrolment_token_expired", "expired"),
        ("a4ce_nonsense", "enrolment_token_unknown", "unknown"),
    ]:
        answer = await client().post("/v1/agents/enrol", enrol_body(token))
        assert answer.status == 401, answer.body
        assert answer.body["error"]["code"] == code and words in answer.body["error"]["message"]
    assert await seed.scalar(sa.text("SELECT count(*) FROM hosts")) == hosts_before


async def test_workspaces_waiting_for_a_host_are_placed_once_an_enrolled_host_can_take_them(client, seed, database_url):
    admin, user = await seed.admin(), await seed.user()
    # Nothing in this module's fleet has 100 cpus; the new host will.
    waiting = (
        await client(user.token).post("/v1/workspaces", {"name": "big", "image_ref": "debian:12", "cpus": 100, "memory_mb": 1024, "disk_gb": 1})
    ).body["workspace"]
    assert waiting["observed_state"] == "pending"
    grant = await issue(client, admin)
    body = enrol_body(grant["token"], capacity={"cpus": 128, "memory_mb": 262_144, "disk_bytes": 1000 * 1024**3})
    host_id = (await client().post("/v1/agents/enrol", body)).body["host_id"]
    # Placement needs a disk report (the agent sends one right after enrolling); until then it stays pending, saying so.
    still = (await client(user.token).get(f"/v1/workspaces/{waiting['id']}")).body
    assert still["observed_state"] == "pending" and "no disk report" in still["state_reason"]
    async with seed.sessions() as session, session.begin():
        await session.execute(
            sa.text("UPDATE hosts SET disk_used_bytes = 0, disk_total_bytes = :t, disk_reported_at = now() WHERE id = :id"),
            {"t": 1000 * 1024**3, "id": host_id},
        )
    # What the reconciler calls every period.
    async with seed.sessions() as session, session.begin():
        assert await workspaces.place_pending(session, settings_for(database_url)) == [uuid.UUID(waiting["id"])]
    placed = (await client(user.token).get(f"/v1/workspaces/{waiting['id']}")).body
    assert placed["host_id"] == host_id and placed["observed_state"] == "creating"


async def test_enrolment_bodies_are_validated_field_by_field(client, seed):
    admin = await seed.admin()
    grant = await issue(client, admin)
    for change, field in [
        ({"host_name": "bad host!"}, "host_name"),
        ({"capacity": {"cpus": 0, "memory_mb": 1, "disk_bytes": 0}}, "capacity.cpus"),
        ({"capacity": {"cpus": 1, "memory_mb": 1}}, "capacity.disk_bytes"),
        ({"labels": {"": "x"}}, "labels..[key]"),
        ({"extra": True}, "extra"),
    ]:
        answer = await client().post("/v1/agents/enrol", enrol_body(grant["token"], **change))
        assert answer.status == 422 and field in answer.error_fields(), (change, answer.body)
    for body, field in [({"max_uses": 0}, "max_uses"), ({"expires_in_seconds": -1}, "expires_in_seconds")]:
        answer = await client(admin.token).post("/v1/enrolment-tokens", body)
        assert answer.status == 422 and answer.error_fields() == [field]


async def test_enrolment_tokens_are_admin_only_and_unknown_ones_404(client, seed):
    user, admin = await seed.user(), await seed.admin()
    assert (await client(user.token).post("/v1/enrolment-tokens", {})).status == 403
    assert (await client(user.token).get("/v1/enrolment-tokens")).status == 403
    assert (await client(admin.token).delete(f"/v1/enrolment-tokens/{uuid.uuid4()}")).status == 404
