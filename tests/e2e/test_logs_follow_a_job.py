"""One workspace create, followed through every daemon's log by its job id and its request id (docs/operations/logging.md).

A real control plane and a real agent, both logging ECS JSON to their
stderr as they do under systemd: every line either writes must validate
against shared/log_schema.json, and the lines about one create must be found
in the API, the relay, the agent and the event consumer by the job id alone,
and again by the request id the API echoed.
"""

from __future__ import annotations

import json
import pathlib
import typing
import uuid

import aiohttp
import jsonschema
import pytest

from shared import logs
from tests.e2e import conftest, system
from tests.harness import wait

SCHEMA = json.loads((pathlib.Path(logs.__file__).parent / "log_schema.json").read_text())


def _lines(*paths: pathlib.Path) -> list[dict[str, typing.Any]]:
    out = []
    for path in paths:
        for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
            try:
                line = json.loads(text)
            except ValueError:
                raise AssertionError(f"{path.name}:{number} is not a JSON log line: {text!r}") from None
            line["_file"] = path.name
            out.append(line)
    return out


# One database for the module: one running system (control plane and agent) serves the test.
@pytest.fixture(scope="module")
def daemons(
    tmp_path_factory, module_database_url, kafka_bootstrap, docker_host, workspace_image, test_run_id
) -> typing.Iterator[tuple[system.ControlPlane, system.Agent, system.Api, str]]:
    """One control plane and one agent, both logging JSON."""
    workdir = tmp_path_factory.mktemp("e2e-logs")
    prefix = f"e{test_run_id[-6:]}logs"
    json_logs = {"logging": {"format": "json", "level": "INFO"}}
    config = system._merge(
        conftest.FAST,
        {
            "database": {"url": module_database_url},
            "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": prefix, "session_timeout": 2.0},
            **json_logs,
        },
    )
    plane = system.ControlPlane(workdir, "cp0", config)
    agent: system.Agent | None = None
    try:
        plane.start()
        admin = system.Api(plane.url, system.create_admin(workdir / "cp0.yaml", workdir))
        enrol = system.run_sync(admin.post("/v1/enrolment-tokens", {"description": "e2e-logs", "max_uses": 1}))
        agent = system.Agent(
            workdir,
            "agent0",
            system._merge(
                {
                    "agent": {
                        "control_plane_url": plane.url,
                        "enrolment_token": enrol["token"],
                        "state_dir": str(workdir / "agent0"),
                        "host_name": f"{prefix}-agent0",
                    },
                    "kafka": dict(config["kafka"]),
                    "docker": {"publish_address": "127.0.0.1", "pull_missing_images": False},
                    "reporting": {"heartbeat_interval": 1.0, "inventory_interval": 1.5, "disk_interval": 2.0, "disk_paths": [str(workdir)]},
                    "cleanup": {"enabled": False},
                    "daemon": {"metrics_port": 0, "shutdown_deadline": 5.0},
                },
                json_logs,
            ),
        ).start()
        agent.wait_enrolled()

        async def active() -> bool:
            hosts = (await admin.get("/v1/hosts"))["items"]
            return len(hosts) == 1 and hosts[0]["status"] == "active" and bool(hosts[0]["disk"]["reported_at"])

        system.run_sync(wait.eventually(active, timeout=30, message="the host active with a disk report"))
        yield plane, agent, admin, workspace_image
    finally:
        if agent is not None:
            agent.stop()
        plane.stop()
        keep = conftest.ARTIFACTS / prefix
        keep.mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            (keep / log.name).write_bytes(log.read_bytes())


async def test_every_line_of_one_create_is_found_by_its_job_id_and_by_its_request_id(daemons) -> None:
    plane, agent, admin, image = daemons
    request_id = f"e2e-{uuid.uuid4().hex}"
    headers = {**admin.headers, "X-Request-Id": request_id}
    body = {"name": "e2e-logs", "image_ref": image, "cpus": 0.5, "memory_mb": 64, "disk_gb": 1}
    async with aiohttp.ClientSession(headers=headers) as session, session.post(f"{plane.url}/v1/workspaces", json=body) as resp:
        assert resp.status == 202, await resp.text()
        assert resp.headers["X-Request-Id"] == request_id
        accepted = await resp.json()
    job_id, ws_id = accepted["job"]["id"], accepted["workspace"]["id"]

    def story() -> dict[str, list[dict]] | None:
        by_job = [line for line in _lines(plane.log, agent.log) if line.get("a4c", {}).get("job_id") == job_id]
        found = {
            "api": [x for x in by_job if x["log"]["logger"] == "controlplane.api.access" and x["http"]["response"]["status_code"] == 202],
            "queued": [x for x in by_job if x["message"] == "command queued"],
            "relay": [x for x in by_job if x["log"]["logger"] == "controlplane.relay" and x["message"] == "command published"],
            "agent accepted": [x for x in by_job if x["service"]["name"] == "a4c-agent" and x["message"] == "command accepted"],
            "agent done": [x for x in by_job if x["service"]["name"] == "a4c-agent" and x["message"] == "command done"],
            "consumer": [x for x in by_job if x["log"]["logger"] == "controlplane.events.consumer" and x["message"] == "job result applied"],
        }
        return found if all(found.values()) else None

    found = await wait.eventually(story, timeout=60, message=f"lines of job {job_id} from the API, relay, agent and consumer")

    assert found["agent done"][0]["a4c"]["ok"] is True and found["consumer"][0]["a4c"]["ok"] is True
    assert {x["_file"] for x in found["agent done"]} == {agent.log.name}
    assert found["api"][0]["a4c"]["workspace_id"] == ws_id and found["agent accepted"][0]["a4c"]["workspace_id"] == ws_id
    # The same story by the request id: it went out in the signed command and came back in the agent's result.
    every = [x for lines in found.values() for x in lines]
    missing = [f"{x['_file']}: {x['message']}" for x in every if x["a4c"].get("request_id") != request_id]
    assert not missing, f"lines of the job without request id {request_id}: {missing}"
    # Every line of the create is found by the job id alone: whatever carries the request id or the
    # workspace id (the consumer's workspace states included) carries the job id too.
    lines = _lines(plane.log, agent.log)
    about = [x for x in lines if x.get("a4c", {}).get("request_id") == request_id or x.get("a4c", {}).get("workspace_id") == ws_id]
    states = [x for x in about if x["message"] == "workspace state applied"]
    assert {x["a4c"]["state"] for x in states} >= {"creating", "running"}, states
    unnamed = [f"{x['_file']}: {x['message']}" for x in about if x["a4c"].get("job_id") != job_id]
    assert not unnamed, f"lines of the create not found by job id {job_id}: {unnamed}"

    everything = _lines(plane.log, agent.log)
    for line in everything:
        line.pop("_file")
        jsonschema.validate(line, SCHEMA)
    services = {line["service"]["name"] for line in everything}
    assert services == {"a4c-controlplane", "a4c-agent"}
