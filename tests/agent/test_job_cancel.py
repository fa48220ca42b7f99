"""A job.cancel command stops the build it names on this agent: Docker stops too, and the result says cancelled."""

from __future__ import annotations

import secrets

import pytest

from shared import messages
from tests.agent import conftest
from tests.harness import wait

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


def _build_containers(kit: conftest.Kit, shell: str) -> list[str]:
    return [row["Id"] for row in kit.docker_client.api.containers(all=True) if row.get("Command") == f"/bin/sh -c '{shell}'"]


async def test_a_cancelled_build_stops_on_docker_reports_cancelled_and_a_cancel_for_nothing_changes_nothing(kit: conftest.Kit) -> None:
    agent = kit.agent()
    tag = f"a4c-test/cancelled-{secrets.token_hex(3)}:1"
    build = messages.BuildCommand(
        job_id="b-cancel", image_id="img-b-cancel", tag=tag, context=messages.BuildContext(dockerfile=f"FROM {kit.base_image}\nRUN sleep 300\n")
    )
    await kit.send(agent, K.IMAGE_BUILD, build)
    await wait.eventually(lambda: _build_containers(kit, "sleep 300") != [], timeout=60, message="the RUN step is running")

    await kit.send(agent, K.JOB_CANCEL, messages.JobCancel(job_id="b-cancel", reason="cancelled by alice"))
    result = await kit.events.result("b-cancel", timeout=30)
    assert (result["ok"], result["error"], result.get("interrupted", False)) == (False, "cancelled: cancelled by alice", False)
    await wait.eventually(lambda: _build_containers(kit, "sleep 300") == [], timeout=30, message="Docker stopped the build")
    assert tag not in [t for image in kit.docker_client.images.list() for t in image.tags]

    # Nothing runs under that id any more: a second cancel is a no-op, and the agent goes on working.
    await kit.send(agent, K.JOB_CANCEL, messages.JobCancel(job_id="b-cancel", reason="again"))
    await kit.send(
        agent,
        K.IMAGE_BUILD,
        messages.BuildCommand(
            job_id="b-after",
            image_id="img-b-after",
            tag=f"{tag}-after",
            context=messages.BuildContext(dockerfile=f"FROM {kit.base_image}\nRUN true\n"),
        ),
    )
    assert (await kit.events.result("b-after", timeout=60))["ok"]
    assert len(kit.events.of("job.result", job_id="b-cancel")) == 1
