"""A real rollout: ansible/site.yml installs the agent on two systemd "servers" and they join a real control plane.

The servers are containers with systemd as PID 1 and sshd on their own
loopback port (tests/packaging/servers.py); Ansible reaches them over SSH. The
agent is a release bundle built from this checkout (`make release`'s
packaging/release.py), installed by the role into a versioned virtualenv on
each server with no index,
and enrols with a control plane this module starts, using an enrolment token
kept in Ansible Vault. Both agents manage the harness's Docker daemon.

Then the fleet is upgraded: the same code built as the next release is
rolled out over the running agents, batch by batch. Last, it is rolled back
to the first release with the documented command
(docs/operations/rollout.md), and the workspace keeps its container.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import io
import json
import pathlib
import re
import subprocess
import tarfile
import time
import typing
import urllib.request

import pytest
import yaml

from tests.e2e import system
from tests.harness import fixtures_run, wait
from tests.packaging import bundles, index_trap, playbook, wheels
from tests.packaging import servers as servers_mod

# The first run on a machine also debootstraps the server image (4-5 minutes).
pytestmark = [pytest.mark.docker, pytest.mark.kafka, pytest.mark.timeout(900)]

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "operations" / "systemd.md"
UNITS = pathlib.Path(__file__).resolve().parents[2] / "packaging" / "systemd"
ONE_BATCH = ("-e", '{"a4c_rollout_batches": ["100%"]}')
# ansible/roles/a4c_release's tasks, as the output names them.
INSTALL_TASK = "TASK [a4c_release : Install the bundle's wheels into the virtualenv, with no package index]"
FLIP_TASK = "TASK [a4c_release : Point current at the release]"
SKEW_CHECK = "a4c_agent_version_skew"  # ansible/tasks/agent-version-skew.yml
AGENT_PLAY = "PLAY [Roll out the A4C node agent]"

CONTROL_PLANE = {
    "reconciler": {"interval": 1.0, "host_down_after": 20.0, "job_ack_timeout": 10.0, "orphan_grace": 3.0},
    "scheduler": {"tick": 1.0},
    "relay": {"poll_interval": 0.5},
    "rate_limit": {"enabled": False},
    "logging": {"format": "text", "level": "INFO"},
}
# Faster reports than production, so that the test sees heartbeats and
# inventories within seconds; everything else is the role's defaults.
AGENT_EXTRA = {
    "kafka": {"session_timeout": 2.0},
    "reporting": {"heartbeat_interval": 1.0, "inventory_interval": 1.5, "disk_interval": 2.0},
}


@dataclasses.dataclass
class Rollout:
    servers: list[servers_mod.Server]
    plane: system.ControlPlane
    api: system.Api
    home: pathlib.Path
    inventory: pathlib.Path
    check_run: playbook.Result
    first_run: playbook.Result
    installed_before_first_run: dict[str, str]
    # The next release's bundle, built in the background while the fleet boots.
    upgrade_bundle: concurrent.futures.Future[pathlib.Path]
    # The only index the servers' pip knows (/etc/pip.conf).
    index: index_trap.IndexTrap

    def playbook(self, *args: str) -> playbook.Result:
        return playbook.run(self.home, self.inventory, *args)


@pytest.fixture(scope="module")
def workspace_image(docker_client, base_image: str, test_run_id: str) -> str:
    """The harness's base image with a process that keeps running (busybox httpd on 8080)."""
    tag = f"a4c-test/rollout-ws:{test_run_id[-8:]}"
    dockerfile = f'FROM {base_image}\nRUN mkdir -p /www && echo rolled-out > /www/index.html\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


# One database for the module: the tests follow one rollout, step by step.
@pytest.fixture(scope="module")
def rollout(
    request,
    tmp_path_factory,
    module_database_url,
    kafka_bootstrap,
    docker_host,
    docker_client,
    test_labels,
    test_run_id,
    systemd_host_image,
    release_bundle,
) -> typing.Iterator[Rollout]:
    workdir = tmp_path_factory.mktemp("rollout")
    clock = time.monotonic()

    def lap(what: str) -> None:
        nonlocal clock
        now = time.monotonic()
        fixtures_run.report(request.config, f"rollout: {what} in {now - clock:.1f} s")
        clock = now

    prefix = f"r{test_run_id[-6:]}"
    config = system._merge(
        CONTROL_PLANE,
        {
            "database": {"url": module_database_url},
            "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": prefix, "session_timeout": 2.0},
        },
    )
    plane = system.ControlPlane(workdir, "cp", config)
    fleet = servers_mod.Fleet(
        docker_client,
        systemd_host_image,
        workdir,
        test_labels,
        servers_mod.socket_path(docker_host),
    )
    builder = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="upgrade-bundle")
    trap = index_trap.IndexTrap().start()
    try:
        upgrade_bundle = builder.submit(
            bundles.build,
            tmp_path_factory.mktemp("dist-upgrade"),
            version=wheels.next_version(bundles.version(release_bundle)),
        )
        # Migrations are a deploy step of their own, as in production (a no-op on
        # the harness's already migrated database, but the command must succeed).
        config_file = workdir / "cp-migrate.yaml"
        config_file.write_text(yaml.safe_dump(config))
        subprocess.run([str(system.BIN / "a4c-controlplane"), "migrate", "--config", str(config_file)], check=True, capture_output=True, timeout=120)
        plane.start()
        admin_token = system.create_admin(workdir / "cp.yaml", workdir)
        admin = system.Api(plane.url, admin_token)
        enrolment = system.run_sync(admin.post("/v1/enrolment-tokens", {"description": "rollout test", "max_uses": 2}))
        lap("control plane migrated, started, admin and enrolment token created")

        servers = fleet.start([f"node-{test_run_id[-4:]}-{i}" for i in (1, 2)])
        for server in servers:
            server.sh(f"printf '%s' '{trap.pip_conf()}' > /etc/pip.conf")
        lap("two systemd servers booted")
        home = workdir / "ansible-home"
        inventory = playbook.write_inventory(
            workdir / "inventory",
            hosts=playbook.hosts(servers),
            group_vars={
                **playbook.connection_vars(fleet.private_key),
                "a4c_agent_bundle": str(release_bundle),
                "a4c_agent_control_plane_url": plane.url,
                "a4c_agent_kafka_bootstrap_servers": [kafka_bootstrap],
                "a4c_agent_kafka_topic_prefix": prefix,
                "a4c_agent_docker_publish_address": "127.0.0.1",
                "a4c_agent_disk_paths": ["/"],
                "a4c_agent_labels": {"rolled-out-by": "ansible"},
                "a4c_agent_config_extra": AGENT_EXTRA,
                "a4c_agent_health_timeout": 90,
            },
        )
        password = workdir / "vault-password"
        password.write_text("rollout-test-vault-password\n")
        playbook.vault_variable(
            home, password, "a4c_agent_enrolment_token", enrolment["token"], inventory / "group_vars" / "a4c_agents" / "vault.yml"
        )
        # The health gate asks the control plane whether it hears each new agent.
        playbook.vault_variable(
            home, password, "a4c_agent_control_plane_token", admin_token, inventory / "group_vars" / "a4c_agents" / "cp-vault.yml"
        )
        vault = ("--vault-password-file", str(password))

        lap("inventory and vault written")
        # The first rollout goes batch by batch (canary first), as site.yml
        # says; check mode and the re-runs take all hosts in one batch, which
        # changes nothing they show and halves their time.
        check_run = playbook.run(home, inventory, "--check", *vault, *ONE_BATCH)
        lap(f"ansible-playbook --check (slowest: {check_run.slowest(3)})")
        installed = {s.name: s.sh("ls -d /opt/a4c-agent /etc/a4c/agent.yaml /etc/systemd/system/a4c-agent.service 2>&1 || true") for s in servers}
        first_run = playbook.run(home, inventory, *vault)
        lap(f"ansible-playbook, first rollout (slowest: {first_run.slowest(5)})")
        yield Rollout(servers, plane, admin, home, inventory, check_run, first_run, installed, upgrade_bundle, trap)
    finally:
        trap.close()
        builder.shutdown(wait=True, cancel_futures=True)
        problems = fleet.close()
        plane.stop()
        assert not problems, f"test servers could not be removed: {problems}"


def _rerun_args(rollout: Rollout) -> tuple[str, ...]:
    return ("--vault-password-file", str(rollout.home.parent / "vault-password"), *ONE_BATCH)


def _host_id(server: servers_mod.Server) -> str:
    return json.loads(server.sh("cat /var/lib/a4c-agent/identity.json"))["host_id"]


def test_check_mode_on_fresh_servers_succeeds_and_installs_nothing(rollout: Rollout) -> None:
    assert rollout.check_run.returncode == 0, str(rollout.check_run)
    assert set(rollout.check_run.recap) == {s.name for s in rollout.servers}
    for server in rollout.servers:
        assert rollout.check_run.recap[server.name]["failed"] == 0
        assert rollout.check_run.recap[server.name]["changed"] > 0, "check mode reports what it would change"
        listing = rollout.installed_before_first_run[server.name]
        assert listing.count("No such file or directory") == 3, f"check mode changed {server.name}:\n{listing}"


def test_the_rollout_leaves_the_agent_active_and_enrolled_on_every_server(rollout: Rollout) -> None:
    assert rollout.first_run.returncode == 0, str(rollout.first_run)
    batches = [line for _, line in rollout.first_run.timeline if line.startswith(AGENT_PLAY)]
    assert len(batches) == 2, f"site.yml rolls out a canary, then the rest: {batches}"
    for server in rollout.servers:
        recap = rollout.first_run.recap[server.name]
        assert recap["failed"] == 0 and recap["unreachable"] == 0, recap
        assert server.sh("systemctl is-active a4c-agent").strip() == "active"
        assert server.sh("systemctl is-enabled a4c-agent").strip() == "enabled"
        assert server.sh("stat -c '%a %U %G' /etc/a4c/agent.yaml").strip() == "640 root a4c-agent"
        assert server.sh("stat -c '%a %U' /var/lib/a4c-agent/identity.json").strip() == "600 a4c-agent"
        # Under the unit's own user, with the Docker group and no capabilities.
        pid = server.unit_property("a4c-agent", "MainPID")
        status = server.sh(f"cat /proc/{pid}/status")
        uid, groups = re.search(r"^Uid:\s+(\d+)", status, re.M), re.search(r"^Groups:(.*)$", status, re.M)
        assert uid is not None and groups is not None, status
        assert uid.group(1) == server.sh("id -u a4c-agent").strip()
        assert server.sh("getent group docker | cut -d: -f3").strip() in groups.group(1).split()
        # ... from the unit alone: the account itself is not root-equivalent.
        assert "docker" not in server.sh("id -nG a4c-agent").split()
        assert re.search(r"^CapEff:\s+0+$", status, re.M), status
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status


async def test_both_hosts_appear_active_in_the_control_plane(rollout: Rollout) -> None:
    expected = {_host_id(s): s.name for s in rollout.servers}

    async def active() -> list[dict]:
        hosts = (await rollout.api.get("/v1/hosts"))["items"]
        ours = [h for h in hosts if h["id"] in expected]
        ready = [h for h in ours if h["status"] == "active" and h["last_heartbeat_at"] and h["disk"]["reported_at"]]
        return ready if len(ready) == len(expected) else []

    hosts = await wait.eventually(active, timeout=30, message="both rolled-out hosts active, with heartbeats and disk reports")
    assert {h["id"]: h["name"] for h in hosts} == expected
    assert all(h["labels"].get("rolled-out-by") == "ansible" for h in hosts)


@pytest.fixture(scope="module")
def workspace(rollout: Rollout, workspace_image: str, docker_client) -> dict:
    async def create() -> dict:
        accepted = await rollout.api.post(
            "/v1/workspaces",
            {
                "name": "rolled-out",
                "image_ref": workspace_image,
                "cpus": 0.1,
                "memory_mb": 32,
                "disk_gb": 1,
                "ports": [{"container_port": 8080}],
            },
            expect=202,
        )
        ws_id = accepted["workspace"]["id"]

        async def running() -> dict | None:
            ws = await rollout.api.get(f"/v1/workspaces/{ws_id}")
            return ws if ws["observed_state"] == "running" and ws["container_id"] else None

        return await wait.eventually(running, timeout=60, message="the workspace runs")

    return system.run_sync(create())


def test_a_workspace_created_through_the_api_runs_on_a_rolled_out_server(rollout: Rollout, workspace: dict, docker_client) -> None:
    host_ids = {_host_id(s) for s in rollout.servers}
    assert workspace["host_id"] in host_ids
    containers = docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={workspace['id']}"})
    assert [c.id for c in containers] == [workspace["container_id"]]
    assert containers[0].status == "running"
    assert containers[0].labels["a4c.host"] == workspace["host_id"]
    port = workspace["published_ports"][0]
    assert port["host_ip"] == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{port['host_port']}/", timeout=5) as response:
        assert response.read().strip() == b"rolled-out"


def _assert_nothing_changed(rollout: Rollout, again: playbook.Result, run: str) -> None:
    assert again.returncode == 0, str(again)
    for server in rollout.servers:
        recap = again.recap[server.name]
        assert recap["failed"] == 0, str(again)
        assert recap["changed"] == 0, f"{server.name} changed on {run}: {again.changed_tasks()}"


def test_a_second_rollout_changes_nothing(rollout: Rollout, request: pytest.FixtureRequest) -> None:
    again = rollout.playbook(*_rerun_args(rollout))
    fixtures_run.report(request.config, f"rollout: second ansible-playbook run in {again.seconds:.1f} s (slowest: {again.slowest(6)})")
    _assert_nothing_changed(rollout, again, "a re-run")


async def test_restarting_the_agent_keeps_the_host_active_without_a_duplicate_container(rollout: Rollout, workspace: dict, docker_client) -> None:
    server = next(s for s in rollout.servers if _host_id(s) == workspace["host_id"])
    host_id = workspace["host_id"]
    old_pid = server.unit_property("a4c-agent", "MainPID")
    statuses: list[str] = []
    restarted = asyncio.Event()

    async def sample() -> None:
        while not restarted.is_set():
            statuses.append((await rollout.api.get(f"/v1/hosts/{host_id}"))["status"])
            await asyncio.sleep(0.2)

    sampler = asyncio.ensure_future(sample())
    try:
        # Blocks until the new process has sent READY=1 (Type=notify).
        await asyncio.to_thread(server.sh, "systemctl restart a4c-agent")
        ready_at = datetime.datetime.now(datetime.UTC)

        def fresh(stamp: str | None) -> bool:
            return stamp is not None and stamp != "" and datetime.datetime.fromisoformat(stamp) > ready_at + datetime.timedelta(seconds=3)

        async def reported_since_restart() -> dict | None:
            host = await rollout.api.get(f"/v1/hosts/{host_id}")
            return host if fresh(host["last_heartbeat_at"]) and fresh(host["disk"]["reported_at"]) else None

        # Reports from more than three seconds after the new process was
        # ready: it has sent inventories (every 1.5 s) and the reconciler
        # (every 1 s) has compared them with what should run.
        await wait.eventually(reported_since_restart, timeout=30, message="heartbeats and reports from the restarted agent")
    finally:
        restarted.set()
        await sampler
    assert server.sh("systemctl is-active a4c-agent").strip() == "active"
    assert server.unit_property("a4c-agent", "MainPID") != old_pid, "the agent process was replaced"
    assert statuses and set(statuses) == {"active"}, f"host status during the restart: {statuses}"
    containers = docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={workspace['id']}"})
    assert [c.id for c in containers] == [workspace["container_id"]], "the same one container, no duplicate"
    assert await system.agreement(rollout.api, docker_client, [_host_id(s) for s in rollout.servers]) is None


def _documented_exposure() -> dict[str, float]:
    text = DOCS.read_text()
    return {unit: float(level) for unit, level in re.findall(r"^\|\s*`(a4c-[\w-]+\.service)`\s*\|\s*([\d.]+)\s*\|", text, re.M)}


def test_installed_units_verify_and_their_exposure_is_the_documented_one(rollout: Rollout) -> None:
    server = rollout.servers[0]
    # With the real ExecStart binary in place, verify needs no stand-in.
    assert server.sh("systemd-analyze verify /etc/systemd/system/a4c-agent.service 2>&1").strip() == ""
    for unit in ("a4c-controlplane.service", "a4c-search-sync.service"):
        server.container.put_archive("/etc/systemd/system", _tar(unit, (UNITS / unit).read_bytes()))
    server.sh("systemctl daemon-reload")
    measured = {}
    for unit in sorted(p.name for p in UNITS.glob("*.service")):
        report = server.sh(f"systemd-analyze security --no-pager {unit}")
        exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", report)
        assert exposure is not None, report
        measured[unit] = float(exposure.group(1))
    assert measured == _documented_exposure(), f"docs/operations/systemd.md records another exposure than measured: {measured}"
    installed = server.sh("cat /etc/systemd/system/a4c-agent.service")
    assert installed == (UNITS / "a4c-agent.service").read_text(), "the role installs the packaging unit unchanged"


def _tar(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- upgrade: the next release over the running fleet ------------------------------------

# systemd's catalogue: "A start job for unit UNIT has finished successfully" (once per (re)start).
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"


@dataclasses.dataclass
class Upgrade:
    version_before: str
    version: str
    before: dict[str, dict[str, str]]  # server name -> what it was before the upgrade
    run: playbook.Result
    finished_at: datetime.datetime


def _snapshot(server: servers_mod.Server) -> dict[str, str]:
    return {
        "host_id": _host_id(server),
        "version": server.sh("/opt/a4c-agent/current/bin/python -c 'import importlib.metadata as m; print(m.version(\"a4c\"))'").strip(),
        "invocation": server.unit_property("a4c-agent", "InvocationID"),
        "restarts": server.unit_property("a4c-agent", "NRestarts"),
        "cursor": json.loads(server.sh("journalctl --lines 1 --output json"))["__CURSOR"],
    }


def _unit_starts(server: servers_mod.Server, unit: str, *, after: str) -> list[str]:
    """systemd's "Started <unit>" journal entries since the cursor ``after``.

    Filtered here, not with journalctl's field matches: combined with
    --after-cursor, those return entries that do not match and miss ones
    that do on these servers (systemd 252).
    """
    lines = server.sh(f"journalctl --after-cursor '{after}' --output json --output-fields UNIT,MESSAGE_ID,MESSAGE").splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    return [e["MESSAGE"] for e in entries if e.get("UNIT") == unit and e.get("MESSAGE_ID") == UNIT_STARTED]


def _bundle_args(bundle: pathlib.Path) -> tuple[str, ...]:
    return ("-e", json.dumps({"a4c_agent_bundle": str(bundle)}))


@pytest.fixture(scope="module")
def upgrade(rollout: Rollout, workspace: dict, request: pytest.FixtureRequest) -> Upgrade:
    """The fleet runs this checkout's bundle; ansible/site.yml rolls out the same code as the next release."""
    began = time.monotonic()
    bundle = rollout.upgrade_bundle.result(timeout=300)
    waited = time.monotonic() - began
    before = {s.name: _snapshot(s) for s in rollout.servers}
    (version_before,) = {b["version"] for b in before.values()}
    # In batches, as a rollout of a new release goes.
    # The control plane runs this checkout, a version below the next release's:
    # an operator would upgrade it first; the test skips that refusal instead.
    run = rollout.playbook("--vault-password-file", str(rollout.home.parent / "vault-password"), "--skip-tags", SKEW_CHECK, *_bundle_args(bundle))
    finished_at = datetime.datetime.now(datetime.UTC)
    fixtures_run.report(
        request.config,
        f"rollout: upgrade {version_before} -> {bundles.version(bundle)} in {run.seconds:.1f} s"
        f" (waited {waited:.1f} s for its bundle; slowest: {run.slowest(5)})",
    )
    return Upgrade(version_before, bundles.version(bundle), before, run, finished_at)


def test_an_upgrade_rolls_out_in_batches_and_changes_every_server(rollout: Rollout, upgrade: Upgrade) -> None:
    assert upgrade.run.returncode == 0, str(upgrade.run)
    batches = [line for _, line in upgrade.run.timeline if line.startswith(AGENT_PLAY)]
    assert len(batches) == 2, f"site.yml rolls out a canary, then the rest: {batches}"
    changed = upgrade.run.changed_tasks()
    for server in rollout.servers:
        recap = upgrade.run.recap[server.name]
        assert recap["failed"] == 0 and recap["unreachable"] == 0, recap
        assert recap["changed"] > 0, f"{server.name}: the upgrade changed nothing"
        mine = {task for task in changed if task.endswith(f"[{server.name}]")}
        assert any(t.startswith(INSTALL_TASK) for t in mine), f"{server.name}: pip did not install the new release: {mine}"
        assert any(t.startswith(FLIP_TASK) for t in mine), f"{server.name}: current was not flipped: {mine}"
        assert any(t.startswith("RUNNING HANDLER [a4c_agent : Restart a4c-agent]") for t in mine), f"{server.name}: no restart: {mine}"


def test_an_upgrade_restarts_the_agent_exactly_once_per_server_and_leaves_it_active(rollout: Rollout, upgrade: Upgrade) -> None:
    for server in rollout.servers:
        before = upgrade.before[server.name]
        started = _unit_starts(server, "a4c-agent.service", after=before["cursor"])
        assert len(started) == 1, f"{server.name}: the agent was started {len(started)} times by the upgrade: {started}"
        assert server.unit_property("a4c-agent", "InvocationID") != before["invocation"], f"{server.name}: the agent was not restarted"
        assert server.unit_property("a4c-agent", "NRestarts") == before["restarts"], f"{server.name}: the agent failed and systemd restarted it"
        assert server.sh("systemctl is-active a4c-agent").strip() == "active"


def test_after_an_upgrade_every_server_has_the_new_version_installed(rollout: Rollout, upgrade: Upgrade, release_bundle: pathlib.Path) -> None:
    assert upgrade.version_before == bundles.version(release_bundle), "before, the fleet ran this checkout's version"
    assert upgrade.version != upgrade.version_before
    for server in rollout.servers:
        assert server.sh("/opt/a4c-agent/current/bin/a4c-agent version").strip() == upgrade.version, server.name
        assert server.sh("readlink /opt/a4c-agent/current").strip() == f"/opt/a4c-agent/releases/{upgrade.version}"
        # The previous release stays, to roll back to.
        assert server.sh("ls /opt/a4c-agent/releases").split() == sorted([upgrade.version_before, upgrade.version])


async def test_after_an_upgrade_the_control_plane_sees_the_new_version_on_the_same_hosts(rollout: Rollout, upgrade: Upgrade) -> None:
    expected = {upgrade.before[s.name]["host_id"]: s.name for s in rollout.servers}
    assert {_host_id(s): s.name for s in rollout.servers} == expected, "a server got a new identity"

    async def upgraded() -> list[dict]:
        hosts = [h for h in (await rollout.api.get("/v1/hosts"))["items"] if h["name"] in expected.values()]
        return hosts if {h["id"]: h["agent_version"] for h in hosts} == dict.fromkeys(expected, upgrade.version) else []

    hosts = await wait.eventually(upgraded, timeout=20, message=f"both hosts report agent_version {upgrade.version}, under their old ids")
    assert sorted(h["name"] for h in hosts) == sorted(expected.values()), f"one host per server, no duplicate: {hosts}"
    assert {h["status"] for h in hosts} == {"active"}


def test_a_second_rollout_of_the_new_version_changes_nothing(rollout: Rollout, upgrade: Upgrade, request: pytest.FixtureRequest) -> None:
    again = rollout.playbook(*_rerun_args(rollout), "--skip-tags", SKEW_CHECK, *_bundle_args(rollout.upgrade_bundle.result()))
    fixtures_run.report(request.config, f"rollout: re-run of the upgrade in {again.seconds:.1f} s")
    _assert_nothing_changed(rollout, again, "a re-run of the upgrade")


async def test_the_workspace_keeps_its_one_container_through_the_upgrade(rollout: Rollout, upgrade: Upgrade, workspace: dict, docker_client) -> None:
    host_id = workspace["host_id"]

    def fresh(stamp: str | None) -> bool:
        return stamp is not None and stamp != "" and datetime.datetime.fromisoformat(stamp) > upgrade.finished_at + datetime.timedelta(seconds=3)

    async def reported_since_upgrade() -> dict | None:
        host = await rollout.api.get(f"/v1/hosts/{host_id}")
        return host if fresh(host["last_heartbeat_at"]) and fresh(host["disk"]["reported_at"]) else None

    # As after a restart: the upgraded agent has sent inventories and the
    # reconciler has compared them with what should run.
    await wait.eventually(reported_since_upgrade, timeout=30, message="heartbeats and reports from the upgraded agent")
    containers = docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={workspace['id']}"})
    assert [c.id for c in containers] == [workspace["container_id"]], "the same one container, no duplicate"
    assert containers[0].status == "running"
    assert await system.agreement(rollout.api, docker_client, [_host_id(s) for s in rollout.servers]) is None


def test_installing_from_the_bundle_asks_no_package_index(rollout: Rollout, upgrade: Upgrade) -> None:
    """Two installs (first rollout, upgrade) on two servers whose pip knows only the trap: it heard nothing."""
    assert upgrade.run.returncode == 0, str(upgrade.run)
    assert rollout.index.requests == [], f"pip asked an index while installing the bundle: {rollout.index.requests}"
    # The trap would have heard: a pip on the server that may use an index asks it.
    server = rollout.servers[0]
    server.sh("python3 -m pip download --no-deps --no-cache-dir --retries 0 --timeout 5 --dest /var/tmp/a4c-trap a4c-not-a-package || true")
    assert "/simple/a4c-not-a-package/" in rollout.index.requests, rollout.index.requests


# -- rollback: the documented command takes the fleet back to the first release ----------


@dataclasses.dataclass
class Rollback:
    version: str
    before: dict[str, dict[str, str]]
    run: playbook.Result
    finished_at: datetime.datetime


@pytest.fixture(scope="module")
def rollback(rollout: Rollout, upgrade: Upgrade, workspace: dict, request: pytest.FixtureRequest) -> Rollback:
    """docs/operations/rollout.md's rollback: site.yml with ``-e a4c_agent_version=<previous>``, the new bundle still configured."""
    before = {s.name: _snapshot(s) for s in rollout.servers}
    run = rollout.playbook(
        "--vault-password-file",
        str(rollout.home.parent / "vault-password"),
        *_bundle_args(rollout.upgrade_bundle.result()),
        "-e",
        f"a4c_agent_version={upgrade.version_before}",
    )
    finished_at = datetime.datetime.now(datetime.UTC)
    fixtures_run.report(
        request.config, f"rollout: rollback {upgrade.version} -> {upgrade.version_before} in {run.seconds:.1f} s (slowest: {run.slowest(5)})"
    )
    return Rollback(upgrade.version_before, before, run, finished_at)


def test_a_rollback_flips_current_back_installs_nothing_and_restarts_the_agent_once(rollout: Rollout, upgrade: Upgrade, rollback: Rollback) -> None:
    assert rollback.run.returncode == 0, str(rollback.run)
    batches = [line for _, line in rollback.run.timeline if line.startswith(AGENT_PLAY)]
    assert len(batches) == 2, f"a rollback goes batch by batch too: {batches}"
    changed = rollback.run.changed_tasks()
    for server in rollout.servers:
        assert rollback.run.recap[server.name]["failed"] == 0, str(rollback.run)
        mine = [task for task in changed if task.endswith(f"[{server.name}]")]
        release_tasks = [t for t in mine if t.startswith("TASK [a4c_release : ")]
        assert release_tasks == [f"{FLIP_TASK} changed: [{server.name}]"], f"{server.name}: a rollback only flips current: {mine}"
        assert server.sh("readlink /opt/a4c-agent/current").strip() == f"/opt/a4c-agent/releases/{rollback.version}"
        assert server.sh("/opt/a4c-agent/current/bin/a4c-agent version").strip() == rollback.version
        before = rollback.before[server.name]
        started = _unit_starts(server, "a4c-agent.service", after=before["cursor"])
        assert len(started) == 1, f"{server.name}: the agent was started {len(started)} times by the rollback: {started}"
        assert server.unit_property("a4c-agent", "InvocationID") != before["invocation"], f"{server.name}: the agent was not restarted"
        assert server.sh("systemctl is-active a4c-agent").strip() == "active"
        # Rolling forward again needs no new copy: both releases stay.
        assert server.sh("ls /opt/a4c-agent/releases").split() == sorted([rollback.version, upgrade.version])


async def test_after_a_rollback_the_control_plane_sees_the_previous_version_and_the_workspace_kept_its_container(
    rollout: Rollout, upgrade: Upgrade, rollback: Rollback, workspace: dict, docker_client
) -> None:
    expected = {upgrade.before[s.name]["host_id"] for s in rollout.servers}
    assert {_host_id(s) for s in rollout.servers} == expected, "a server got a new identity"

    def fresh(stamp: str | None) -> bool:
        return stamp is not None and stamp != "" and datetime.datetime.fromisoformat(stamp) > rollback.finished_at + datetime.timedelta(seconds=3)

    async def rolled_back() -> list[dict]:
        hosts = [h for h in (await rollout.api.get("/v1/hosts"))["items"] if h["id"] in expected]
        done = [h for h in hosts if h["agent_version"] == rollback.version and fresh(h["last_heartbeat_at"]) and fresh(h["disk"]["reported_at"])]
        return done if len(done) == len(expected) else []

    hosts = await wait.eventually(rolled_back, timeout=30, message=f"both hosts report agent_version {rollback.version} after the rollback")
    assert {h["status"] for h in hosts} == {"active"}
    containers = docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={workspace['id']}"})
    assert [c.id for c in containers] == [workspace["container_id"]], "the same one container, no duplicate"
    assert containers[0].status == "running"
    assert await system.agreement(rollout.api, docker_client, [_host_id(s) for s in rollout.servers]) is None


@pytest.fixture(scope="module")
def broken_configure(rollout: Rollout, upgrade: Upgrade) -> typing.Iterator[tuple[playbook.Result, dict[str, str]]]:
    """``--tags a4c_agent_configure`` with a config the agent refuses, in site.yml's batches; then the good config again."""
    bad = {**AGENT_EXTRA, "reporting": {**AGENT_EXTRA["reporting"], "heartbeat_intervall": 1.0}}
    vault = ("--vault-password-file", str(rollout.home.parent / "vault-password"))
    configs = {s.name: s.sh("sha256sum /etc/a4c/agent.yaml") for s in rollout.servers}
    run = rollout.playbook(*vault, "--tags", "a4c_agent_configure", "-e", json.dumps({"a4c_agent_config_extra": bad}))
    yield run, configs
    restored = rollout.playbook(*vault, "--tags", "a4c_agent_configure", *ONE_BATCH)
    assert restored.returncode == 0, f"the good config did not bring the canary back:\n{restored}"


def test_a_broken_config_rolled_out_by_tag_stops_at_the_first_host(rollout: Rollout, broken_configure) -> None:
    run, configs = broken_configure
    canary, second = rollout.servers
    assert run.returncode != 0, str(run)
    assert run.recap[canary.name]["failed"] == 1, str(run)
    assert second.name not in run.recap, f"the second batch ran:\n{run}"
    assert second.sh("sha256sum /etc/a4c/agent.yaml") == configs[second.name], "the second server's config changed"
    assert second.sh("systemctl is-active a4c-agent").strip() == "active"
    # The canary's agent refused the config, and the failure says so.
    assert canary.sh("sha256sum /etc/a4c/agent.yaml") != configs[canary.name]
    assert "did not enrol and report healthy" in run.output
    assert "heartbeat_intervall" in run.output, "the agent's journal names the bad key"
