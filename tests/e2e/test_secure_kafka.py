"""The whole create path over a SASL_SSL-only way into Kafka: relay, event consumer, sync and CI consumers
and both agents authenticate with SCRAM-SHA-512 over TLS, as on a production cluster."""

from __future__ import annotations

import typing

import pytest

from tests.harness import tls, wait

USER, PASSWORD = "a4c", "e2e secret over TLS"


SASL_USERS = {USER: PASSWORD}


# Every daemon of this module's system gets only the SASL_SSL address and the credentials.
@pytest.fixture(scope="module")
def kafka_bootstrap(sasl_ssl_broker) -> str:
    return sasl_ssl_broker[1]


@pytest.fixture(scope="module")
def kafka_client_settings(kafka_certificates: tls.Certificates, tmp_path_factory) -> dict[str, typing.Any]:
    secret = tmp_path_factory.mktemp("secret") / "kafka-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": USER,
        "sasl_password_file": str(secret),
        "ssl_cafile": str(kafka_certificates.ca),
    }


async def test_a_workspace_is_created_and_deleted_with_every_client_on_sasl_ssl(a4c_system):
    api = a4c_system.api
    accepted = await api.post(
        "/v1/workspaces",
        {
            "name": "over-tls",
            "image_ref": a4c_system.workspace_image,
            "cpus": 0.5,
            "memory_mb": 64,
            "disk_gb": 1,
        },
        expect=202,
    )
    ws_id, job_id = accepted["workspace"]["id"], accepted["job"]["id"]

    async def running() -> bool:
        ws = await api.get(f"/v1/workspaces/{ws_id}")
        return ws["observed_state"] == "running" and bool(ws["container_id"])

    await wait.eventually(running, timeout=60, message="the workspace runs: command and result events crossed SASL_SSL")

    # The running state and the job's result are two events, possibly applied in two batches.
    async def succeeded() -> dict | None:
        job = await api.get(f"/v1/jobs/{job_id}")
        return job if job["status"] == "succeeded" else None

    await wait.eventually(succeeded, timeout=30, interval=0.2, message="the create job succeeded")

    deleted = await api.delete(f"/v1/workspaces/{ws_id}", expect=202)

    async def gone() -> bool:
        return (await api.get(f"/v1/jobs/{deleted['job']['id']}"))["status"] == "succeeded"

    await wait.eventually(gone, timeout=60, message="the delete job succeeds over SASL_SSL")
