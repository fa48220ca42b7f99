"""ansible/site.yml rolls out batch by batch and stops at the first batch that does not come up healthy.

Two fresh systemd servers; the control plane they are told to enrol with
does not answer (nothing listens on its port). The canary, alone in the first
batch, installs and starts the agent, which keeps retrying enrolment and so
never becomes healthy: the role fails it after a4c_agent_health_timeout with
the agent's own journal, and the play stops. The second server is never touched.
"""

from __future__ import annotations

import pathlib
import sys
import typing

import pytest

from tests.harness import ports
from tests.packaging import playbook
from tests.packaging import servers as servers_mod

# The first run on a machine also debootstraps the server image (4-5 minutes).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
# Nothing answers at the control plane's URL, so the agents' play cannot ask
# its version either (ansible/tasks/agent-version-skew.yml): skip that check.
NO_SKEW_CHECK = ("--skip-tags", "a4c_agent_version_skew")

HEALTH_TIMEOUT = 10
# The health gate's rescue (ansible/roles/a4c_agent/tasks/health.yml) fails the host with this task.
HEALTH_GATE_FAILURE = "TASK [a4c_agent : Fail the host]"


@pytest.fixture(scope="module")
def stopped_rollout(
    tmp_path_factory,
    docker_client,
    docker_host,
    test_labels,
    test_run_id,
    systemd_host_image,
    release_bundle: pathlib.Path,
    kafka_bootstrap: str,
) -> typing.Iterator[tuple[list[servers_mod.Server], playbook.Result, pathlib.Path]]:
    workdir = tmp_path_factory.mktemp("batches")
    fleet = servers_mod.Fleet(
        docker_client,
        systemd_host_image,
        workdir,
        test_labels,
        servers_mod.socket_path(docker_host),
    )
    try:
        servers = fleet.start([f"batch-{test_run_id[-4:]}-{i}" for i in (1, 2)])
        inventory = playbook.write_inventory(
            workdir / "inventory",
            hosts=playbook.hosts(servers),
            group_vars={
                **playbook.connection_vars(fleet.private_key),
                "a4c_agent_bundle": str(release_bundle),
                "a4c_agent_control_plane_url": f"http://127.0.0.1:{ports.free_port()}",
                "a4c_agent_enrolment_token": "a-token-nobody-checks",
                "a4c_agent_kafka_bootstrap_servers": [kafka_bootstrap],
                "a4c_agent_disk_paths": ["/"],
                "a4c_agent_health_timeout": HEALTH_TIMEOUT,
            },
        )
        yield servers, playbook.run(workdir / "ansible-home", inventory, *NO_SKEW_CHECK), inventory
    finally:
        problems = fleet.close()
        assert not problems, f"test servers could not be removed: {problems}"


def test_a_canary_that_does_not_become_healthy_stops_the_rollout_before_the_next_batch(stopped_rollout) -> None:
    (canary, second), result, _ = stopped_rollout
    # First: the canary failed at the health gate, not earlier (an install that
    # broke would fail here too, and the output says which task and why).
    failed = result.failed_tasks(canary.name)
    assert failed and failed[-1] == HEALTH_GATE_FAILURE, f"the canary failed at {failed[-1:]}, not at the health gate:\n{result}"
    assert result.returncode != 0, str(result)
    assert result.recap[canary.name]["failed"] == 1, str(result)
    assert second.name not in result.recap, f"the second batch ran:\n{result}"
    assert second.rc("test -e /opt/a4c-agent || test -e /etc/a4c/agent.yaml") != 0, "the second server was changed"
    # The canary got as far as running the agent; it failed on health, and says why.
    assert canary.sh("test -x /opt/a4c-agent/current/bin/a4c-agent && echo installed").strip() == "installed", str(result)
    assert f"did not enrol and report healthy within {HEALTH_TIMEOUT} s" in result.output
    assert "enrolment: control plane unavailable, retrying" in result.output, "the failure carries the agent's journal"


def test_preflight_refuses_a_python_older_than_3_11_before_installing_anything(stopped_rollout) -> None:
    # The server the stopped rollout never touched, given an interpreter that
    # says it is Ubuntu 22.04's Python.
    (_, untouched), _, inventory = stopped_rollout
    untouched.sh("printf '#!/bin/sh\\necho 3.10.12\\n' > /usr/local/bin/python3.10 && chmod 755 /usr/local/bin/python3.10")
    result = playbook.run(
        inventory.parent / "ansible-home",
        inventory,
        *NO_SKEW_CHECK,
        "--limit",
        untouched.name,
        "-e",
        '{"a4c_agent_python": "/usr/local/bin/python3.10"}',
    )
    assert result.returncode != 0, str(result)
    assert result.recap[untouched.name]["failed"] == 1, str(result)
    assert "a4c needs Python 3.11 or newer; /usr/local/bin/python3.10 (a4c_agent_python) is 3.10.12" in result.output
    assert "set a4c_agent_python=/usr/bin/python3.11" in result.output
    assert untouched.rc("test -e /opt/a4c-agent || test -e /etc/a4c/agent.yaml || id a4c-agent") != 0, "preflight let the install begin"


def test_preflight_refuses_a_bundle_built_for_another_python_before_installing_anything(stopped_rollout) -> None:
    # The bundle is for this virtualenv's Python (the servers' too); the host's
    # interpreter says it is 3.12, new enough, but not the bundle's.
    (_, untouched), _, inventory = stopped_rollout
    untouched.sh("printf '#!/bin/sh\\necho 3.12.8\\n' > /usr/local/bin/python3.12 && chmod 755 /usr/local/bin/python3.12")
    result = playbook.run(
        inventory.parent / "ansible-home",
        inventory,
        *NO_SKEW_CHECK,
        "--limit",
        untouched.name,
        "-e",
        '{"a4c_agent_python": "/usr/local/bin/python3.12"}',
    )
    assert result.returncode != 0, str(result)
    assert result.failed_tasks(untouched.name) == ["TASK [a4c_release : Assert the bundle is built for the host's Python]"], str(result)
    assert f"is built for Python 3.{sys.version_info.minor}, but /usr/local/bin/python3.12 on this host is 3.12.8" in result.output, str(result)
    assert untouched.rc("test -e /opt/a4c-agent || test -e /etc/a4c/agent.yaml || id a4c-agent") != 0, "preflight let the install begin"
