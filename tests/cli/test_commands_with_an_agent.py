"""The CLI against a control plane with one real agent on the test Docker daemon: builds, --wait, hosts, drain.

The full system (``a4c up``) is tested in test_a4c_up_end_to_end.py; this
module drives the commands whose behaviour needs a host: a followed build
that streams its log or fails with its error line, a workspace that reaches
``running`` under ``--wait``, the disk column, drain.
"""

from __future__ import annotations

import json
import re
import typing
import urllib.request

import pytest

from tests.cli.conftest import Cli
from tests.e2e import system
from tests.harness import processes, wait

FAST = {
    "reconciler": {"interval": 1.0, "host_down_after": 8.0, "job_ack_timeout": 6.0, "orphan_grace": 3.0},
    "scheduler": {"tick": 1.0},
    "relay": {"poll_interval": 0.3},
    "rate_limit": {"enabled": False},
    "logging": {"format": "text"},
}
SMALL = ("--cpus", "0.1", "--memory", "32", "--disk", "1")


class Fleet(typing.NamedTuple):
    url: str
    token: str
    host: str
    base_image: str
    workspace_image: str


# One database for the module: one control plane and agent (seconds to start) serve every test.
@pytest.fixture(scope="module")
def fleet(tmp_path_factory, module_database_url, kafka_bootstrap, docker_host, base_image, workspace_image, test_run_id) -> typing.Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("cli-fleet")
    prefix = f"clif{test_run_id[-6:]}"
    kafka = {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": prefix, "session_timeout": 2.0}
    plane = system.ControlPlane(workdir, "cp", system._merge(FAST, {"database": {"url": module_database_url}, "kafka": kafka}))
    agent = None
    try:
        plane.start()
        token = system.create_admin(workdir / "cp.yaml", workdir)
        api = system.Api(plane.url, token)
        enrol = system.run_sync(api.post("/v1/enrolment-tokens", {"description": "cli tests"}))
        host = f"{prefix}-h1"
        agent = system.Agent(
            workdir,
            "agent",
            {
                "agent": {"control_plane_url": plane.url, "enrolment_token": enrol["token"], "state_dir": str(workdir / "agent"), "host_name": host},
                "kafka": kafka,
                "docker": {"publish_address": "127.0.0.1", "pull_missing_images": False},
                "reporting": {"heartbeat_interval": 1.0, "inventory_interval": 1.5, "disk_interval": 1.0, "disk_paths": [str(workdir)]},
                "cleanup": {"enabled": False},
                "daemon": {"metrics_port": 0, "shutdown_deadline": 5.0},
                "logging": {"format": "text"},
            },
        ).start()
        agent.wait_enrolled()

        async def reporting() -> bool:
            [h] = (await api.get("/v1/hosts"))["items"]
            return h["status"] == "active" and h["disk"]["reported_at"] is not None

        system.run_sync(wait.eventually(reporting, timeout=30, message=f"the host is active with a disk report\n{processes.log_tail(agent.log)}"))
        yield Fleet(plane.url, token, host, base_image, workspace_image)
    finally:
        if agent is not None:
            agent.stop()
        plane.stop()


@pytest.fixture
def cli(fleet, tmp_path) -> Cli:
    return Cli(fleet.url, fleet.token, tmp_path)


def test_hosts_list_shows_the_host_active_with_its_disk_use(cli, fleet):
    table = cli.ok("hosts", "list").stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["ID", "NAME", "STATUS", "DISK USED", "DISK LIMITS", "WORKSPACES", "CPUS", "MEMORY", "HEARTBEAT (UTC)"]
    [row] = [line for line in table[1:] if f" {fleet.host} " in line]
    # The harness's dockerd keeps its data on ext4 (tests/harness/dockerd.py): it cannot cap a workspace's disk.
    assert re.search(rf"{fleet.host} +active +\d+% \(\d+\.\dG/\d+\.\dG\) +not enforced ", row), row
    [host] = json.loads(cli.ok("-o", "json", "hosts", "list").stdout)
    assert host["name"] == fleet.host and host["disk"]["total_bytes"] > 0
    assert json.loads(cli.ok("-o", "json", "hosts", "get", host["id"][:8]).stdout)["id"] == host["id"]
    disk = cli.ok("hosts", "disk", fleet.host).stdout
    assert disk.startswith(f"{fleet.host}: ") and "used" in disk and "PATH" in disk
    assert "workspace disk limits: not enforced (" in disk and "Docker cannot cap a container's disk there" in disk


def test_a_followed_build_streams_its_log_and_exits_0(cli, fleet, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {fleet.base_image}\nRUN echo step-one-done\n")
    cli.ok("images", "register", "streamed", "--dockerfile", str(tmp_path / "Dockerfile"))
    done = cli.process("images", "build", "streamed", "--follow", "--timeout", "120")
    assert done.code == 0, str(done)
    assert "step-one-done" in done.stderr, "the build log streams"
    _header, row = done.stdout.splitlines()
    assert row.split()[1:4] == ["image_build", "succeeded", fleet.host], row


def test_a_failing_build_exits_1_with_its_error_line_and_the_search_finds_it(cli, fleet, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {fleet.base_image}\nRUN echo 'write /var/cache: no space left on device' >&2 && exit 3\n")
    cli.ok("images", "register", "broken", "--dockerfile", str(tmp_path / "Dockerfile"))
    done = cli.process("images", "build", "broken", "--follow", "--timeout", "120")
    assert done.code == 1, str(done)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: build on {fleet.host} failed: ") and "no space left on device" in last, done.stderr

    def found() -> list:
        return json.loads(cli.ok("-o", "json", "jobs", "search", f'status:failed host:{fleet.host} "no space"').stdout)["jobs"]

    hits = wait.wait_until(found, timeout=15, message="the failed build is searchable")
    assert [(j["kind"], j["image_name"]) for j in hits] == [("image_build", "broken")]


def test_create_with_wait_shows_progress_until_running_and_prints_the_running_workspace(cli, fleet):
    done = cli.process(
        "-o", "json", "workspaces", "create", "serves", "--image-ref", fleet.workspace_image, *SMALL, "--port", "8080", "--wait", "--timeout", "120"
    )
    assert done.code == 0, str(done)
    ws = json.loads(done.stdout)
    assert ws["observed_state"] == "running" and ws["container_id"] and ws["host_id"]
    [port] = ws["published_ports"]
    progress = done.stderr.splitlines()
    assert progress[0].startswith("waiting up to 120 s for workspace serves to be running")
    assert progress[-1].endswith(f"job succeeded on {fleet.host}; workspace running (127.0.0.1:{port['host_port']}->8080/tcp)"), progress
    with urllib.request.urlopen(f"http://127.0.0.1:{port['host_port']}/", timeout=10) as resp:
        assert resp.read().strip() == b"a4c-workspace"
    cli.ok("workspaces", "delete", "serves", "--wait", "--timeout", "60")


def test_drain_cordons_the_host_and_prints_the_workspaces_still_there(cli, fleet):
    cli.ok("workspaces", "create", "stays", "--image-ref", fleet.workspace_image, *SMALL, "--wait", "--timeout", "120")
    try:
        done = cli.ok("hosts", "drain", fleet.host)
        lines = done.stdout.splitlines()
        assert lines[0] == f"{fleet.host} is cordoned; 1 workspace(s) still live there:"
        assert lines[1].split() == ["ID", "NAME", "OWNER", "STATE"] and lines[2].split()[1:] == ["stays", output_short_owner(cli), "running"]
        refused = cli.run("workspaces", "create", "no-room", "--image-ref", fleet.workspace_image, *SMALL)
        assert "no eligible host: 1 draining" in refused.stdout, "a drained host takes nothing new"
        cli.ok("workspaces", "delete", "no-room")
    finally:
        cli.ok("hosts", "uncordon", fleet.host)
    cli.ok("workspaces", "delete", "stays", "--wait", "--timeout", "60")
    assert cli.ok("hosts", "drain", fleet.host).stdout.strip() == f"{fleet.host} is drained: no workspaces live there."
    cli.ok("hosts", "uncordon", fleet.host)


def output_short_owner(cli) -> str:
    return json.loads(cli.ok("-o", "json", "whoami").stdout)["id"][:8]


def test_stop_and_start_with_wait_reach_their_states_and_delete_removes_the_container(cli, fleet, docker_client):
    ws = json.loads(
        cli.ok("-o", "json", "workspaces", "create", "cycled", "--image-ref", fleet.workspace_image, *SMALL, "--wait", "--timeout", "120").stdout
    )
    stopped = json.loads(cli.ok("-o", "json", "workspaces", "stop", "cycled", "--wait", "--timeout", "60").stdout)
    assert stopped["observed_state"] == "stopped"
    assert docker_client.containers.get(ws["container_id"]).status == "exited"
    started = json.loads(cli.ok("-o", "json", "workspaces", "start", ws["id"][:8], "--wait", "--timeout", "60").stdout)
    assert started["observed_state"] == "running"
    cli.ok("workspaces", "delete", "cycled", "--wait", "--timeout", "60")
    assert not docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws['id']}"})


def test_start_wait_on_a_failed_workspace_waits_for_the_new_attempt_and_reports_its_failure(cli, fleet):
    # Found from outside: the wait took the failure the start was sent to change for its outcome, at 0.0 s.
    crash = ("--command", "sh -c 'cat /proc/sys/kernel/random/uuid; exit 3'")  # each attempt prints another line
    first = cli.process("workspaces", "create", "crashes", "--image-ref", fleet.workspace_image, *SMALL, *crash, "--wait", "--timeout", "120")
    # Reported as the workspace's failure or as its job's, whichever the API showed first.
    assert first.code == 1 and "did not stay up" in first.stderr, str(first)
    again = cli.process("workspaces", "start", "crashes", "--wait", "--timeout", "120")
    assert again.code == 1, str(again)
    # Again either way, but the new attempt's: the error names a line that only the new attempt printed.
    error = again.stderr[again.stderr.rindex("\nerror: ") :]
    printed = set(re.findall(r"(?<!job )[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", error))  # not the job's id
    assert printed - set(re.findall(r"[0-9a-f-]{36}", first.stderr)), str(again)
    cli.ok("workspaces", "delete", "crashes", "--wait", "--timeout", "60")
