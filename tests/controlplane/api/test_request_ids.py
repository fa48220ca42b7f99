"""Request ids (controlplane/api/requestlog.py): echoed on every answer, bound to the request's log lines, written with its commands."""

from __future__ import annotations

import json
import logging
import pathlib
import typing
import uuid

import jsonschema
import pytest
import sqlalchemy as sa

from shared import logs

SCHEMA = json.loads((pathlib.Path(logs.__file__).parent / "log_schema.json").read_text())


class Lines(logging.Handler):
    """The ECS lines the control plane would write, formatted as they are emitted (the scope is read then)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.EcsFormatter("a4c-controlplane"))
        self.lines: list[dict[str, typing.Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> typing.Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


async def test_every_answer_carries_a_request_id_the_callers_when_well_formed(client) -> None:
    fresh = await client().get("/v1/me")  # 401: errors carry it too
    assert fresh.status == 401 and logs.valid_request_id(fresh.headers["X-Request-Id"])
    again = await client().get("/v1/me")
    assert again.headers["X-Request-Id"] != fresh.headers["X-Request-Id"]
    kept = await client().get("/healthz", headers={"X-Request-Id": "ci-run-4711.step-2"})
    assert kept.headers["X-Request-Id"] == "ci-run-4711.step-2"
    replaced = await client().get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert replaced.headers["X-Request-Id"] != "bad id with spaces" and logs.valid_request_id(replaced.headers["X-Request-Id"])


async def test_answers_outside_the_api_carry_it_too_unknown_routes_redirects_and_the_dashboard(api, http) -> None:
    for path, status in (("/v1/no-such-thing", 404), ("/ui", 302), ("/", 200)):
        async with http.get(api + path, allow_redirects=False, headers={"X-Request-Id": f"probe-{status}"}) as answer:
            assert answer.status == status, path
            assert answer.headers.get("X-Request-Id") == f"probe-{status}", (path, dict(answer.headers))


async def test_a_create_writes_its_request_id_with_the_command_and_logs_its_job_under_it(client, seed, lines) -> None:
    await seed.host(cpus=64, memory_mb=262_144, disk_total=10_000 * 1024**3, disk_used=0)
    user = await seed.user()
    request_id = f"req-{uuid.uuid4().hex}"
    answer = await client(user.token).post(
        "/v1/workspaces",
        {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1},
        headers={"X-Request-Id": request_id},
    )
    assert answer.status == 202, answer.body
    assert answer.headers["X-Request-Id"] == request_id
    job_id, ws_id = answer.body["job"]["id"], answer.body["workspace"]["id"]

    rows = await seed.all(sa.text("SELECT payload FROM outbox WHERE key = :key AND topic LIKE 'commands.%'"), key=ws_id)
    assert [r.payload["request_id"] for r in rows] == [request_id]

    for line in lines.lines:
        jsonschema.validate(line, SCHEMA)
    mine = [line for line in lines.lines if line.get("a4c", {}).get("request_id") == request_id]
    queued = [line for line in mine if line["message"] == "command queued"]
    assert queued and queued[0]["a4c"]["job_id"] == job_id and queued[0]["a4c"]["workspace_id"] == ws_id
    access = [line for line in mine if line["log"]["logger"] == "controlplane.api.access"]
    assert len(access) == 1, mine
    assert access[0]["a4c"]["job_id"] == job_id and access[0]["a4c"]["workspace_id"] == ws_id
    assert access[0]["http"] == {"request": {"method": "POST"}, "response": {"status_code": 202}}
    assert access[0]["url"] == {"path": "/v1/workspaces"} and access[0]["event"]["duration"] > 0


async def test_the_access_line_of_a_create_that_waits_queued_names_its_job(client, seed, lines) -> None:
    user = await seed.user()
    request_id = f"req-{uuid.uuid4().hex}"
    answer = await client(user.token).post(
        "/v1/workspaces",
        {"name": f"ws-{uuid.uuid4().hex[:8]}", "image_ref": "debian:12", "cpus": 200, "memory_mb": 256, "disk_gb": 1},
        headers={"X-Request-Id": request_id},
    )
    assert answer.status == 202 and answer.body["workspace"]["host_id"] is None, answer.body
    access = [x for x in lines.lines if x["log"]["logger"] == "controlplane.api.access" and x.get("a4c", {}).get("request_id") == request_id]
    assert len(access) == 1 and access[0]["a4c"]["job_id"] == answer.body["job"]["id"], access
    assert access[0]["a4c"]["workspace_id"] == answer.body["workspace"]["id"]
