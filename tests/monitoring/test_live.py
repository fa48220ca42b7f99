"""A real Prometheus, configured from monitoring/, scraping a running control plane and two agents.

The system is the e2e one (tests/e2e/system.py: real ``a4c-controlplane run``
and ``a4c-agent run`` processes on the harness' PostgreSQL, Kafka and
dockerd), its targets written by the shipped file_sd playbook from an
inventory of these processes, and the control plane's /metrics behind
``http.metrics_token_file`` as in production. Only the intervals and the
alerts' ``for:`` are shortened.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import time
import typing

import pytest

from tests.e2e import conftest as e2e
from tests.e2e import system
from tests.harness import ports, wait
from tests.monitoring import prometheus

_modules = itertools.count()
ARTIFACTS = prometheus.ROOT / "test-artifacts" / "monitoring"


@dataclasses.dataclass
class Monitored:
    plane: system.ControlPlane
    agents: dict[str, system.Agent]
    admin: system.Api
    prometheus: prometheus.Prometheus


# One database for the module: one running system (control plane, agent, Prometheus) is scraped by every test.
@pytest.fixture(scope="module")
def monitored(tmp_path_factory, module_database_url, kafka_bootstrap, docker_host, test_run_id) -> typing.Iterator[Monitored]:
    workdir = tmp_path_factory.mktemp("monitoring")
    prefix = f"m{test_run_id[-6:]}m{next(_modules)}"
    token_file = workdir / "metrics.token"
    token_file.write_text("scrape-me\n")
    token_file.chmod(0o600)
    config = system._merge(
        e2e.FAST,
        {
            "database": {"url": module_database_url},
            "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": prefix, "session_timeout": 2.0},
            "http": {"metrics_token_file": str(token_file)},
        },
    )
    plane = system.ControlPlane(workdir, "cp0", config)
    agents: dict[str, system.Agent] = {}
    server: prometheus.Prometheus | None = None
    try:
        plane.start()
        admin = system.Api(plane.url, system.create_admin(workdir / "cp0.yaml", workdir))
        enrol = system.run_sync(admin.post("/v1/enrolment-tokens", {"description": "monitoring", "max_uses": 2}))
        inventory: dict[str, typing.Any] = {
            "a4c_controlplane": {"hosts": {"cp0": {"ansible_host": "127.0.0.1", "a4c_controlplane_http_port": plane.port}}},
            "a4c_agents": {"hosts": {}},
        }
        for name in ("agent0", "agent1"):
            port = ports.free_port()
            agents[name] = system.Agent(
                workdir,
                name,
                {
                    "agent": {
                        "control_plane_url": plane.url,
                        "enrolment_token": enrol["token"],
                        "state_dir": str(workdir / name),
                        "host_name": f"{prefix}-{name}",
                    },
                    "kafka": dict(config["kafka"]),
                    "docker": {"publish_address": "127.0.0.1", "pull_missing_images": False},
                    "reporting": {"heartbeat_interval": 1.0, "inventory_interval": 1.5, "disk_interval": 2.0, "disk_paths": [str(workdir)]},
                    "cleanup": {"enabled": False},
                    "daemon": {"metrics_host": "127.0.0.1", "metrics_port": port, "shutdown_deadline": 5.0},
                    "logging": {"format": "text", "level": "INFO"},
                },
            ).start()
            inventory["a4c_agents"]["hosts"][name] = {"ansible_host": "127.0.0.1", "a4c_agent_metrics_port": port}
        for agent in agents.values():
            agent.wait_enrolled()

        async def both_active() -> bool:
            hosts = (await admin.get("/v1/hosts"))["items"]
            return len(hosts) == 2 and all(h["status"] == "active" and h["last_heartbeat_at"] for h in hosts)

        system.run_sync(wait.eventually(both_active, timeout=30, message="both hosts active"))
        targets = prometheus.write_targets(inventory, workdir)
        rules = prometheus.fast_rules(workdir / "a4c.rules.yml")
        server = prometheus.Prometheus(workdir, prometheus.config_for(workdir, targets, token_file, rules)).start()
        yield Monitored(plane, agents, admin, server)
    finally:
        if server is not None:
            server.stop()
        for agent in agents.values():
            agent.stop()
        plane.stop()
        keep = ARTIFACTS / prefix
        keep.mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy(log, keep / log.name)


def _targets_up(server: prometheus.Prometheus) -> dict[tuple[str, str], str]:
    return {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in server.targets()}


def test_prometheus_scrapes_the_control_plane_with_its_token_and_both_agents(monitored: Monitored) -> None:
    expected = {("a4c-controlplane", "cp0"), ("a4c-agent", "agent0"), ("a4c-agent", "agent1")}

    def all_up() -> dict[tuple[str, str], str]:
        seen = _targets_up(monitored.prometheus)
        assert {k for k, health in seen.items() if health == "up"} >= expected, seen
        return seen

    wait.wait_until(all_up, timeout=30, message="control plane and agents scraped")
    hosts = monitored.prometheus.api("query", query='a4c_hosts{job="a4c-controlplane", status="active"}')["result"]
    assert [r["value"][1] for r in hosts] == ["2"]


def test_every_metric_the_rules_and_dashboards_read_is_exported(monitored: Monitored) -> None:
    """A renamed metric would leave an alert silent forever: each a4c_* name must be known to Prometheus."""
    exprs = [rule["expr"] for rule in prometheus.alerts().values()]
    exprs += [expr for path in prometheus.DASHBOARDS for _, expr in prometheus.dashboard_queries(path)]
    wanted = set().union(*(prometheus.metric_names(e) for e in exprs))

    def known() -> set[str]:
        metadata = monitored.prometheus.api("metadata")
        # Counters are described under their name with or without _total, by exposition format.
        names = set(metadata) | {f"{n}_total" for n in metadata}
        missing = wanted - names
        assert not missing, f"not exported: {sorted(missing)}"
        return names

    wait.wait_until(known, timeout=30, message="every metric the rules and dashboards use has been scraped")


def test_every_dashboard_query_runs_without_error(monitored: Monitored) -> None:
    queries = [q for path in prometheus.DASHBOARDS for q in prometheus.dashboard_queries(path)]
    assert len(queries) > 30
    # Some data first, so that rate() and histogram_quantile() have samples to work on.
    wait.wait_until(
        lambda: monitored.prometheus.api("query", query='count(a4c_agent_dependency_up{job="a4c-agent"})')["result"],
        timeout=30,
        message="agent metrics scraped",
    )
    end = time.time()
    errors = []
    for where, expr in queries:
        try:
            monitored.prometheus.api("query_range", query=expr, start=end - 300, end=end, step=15)
        except AssertionError as exc:
            errors.append(f"{where}: {exc}")
    assert not errors, "\n".join(errors)
    # The variable's query finds both hosts under their inventory names.
    values = monitored.prometheus.api("query", query='up{job="a4c-agent"}')["result"]
    assert sorted(r["metric"]["instance"] for r in values) == ["agent0", "agent1"]


def test_a_stopped_agent_fires_agent_down_then_host_down(monitored: Monitored) -> None:
    server = monitored.prometheus
    wait.wait_until(lambda: _targets_up(server).get(("a4c-agent", "agent1")) == "up", timeout=30, message="agent1 scraped")
    firing = server.firing()
    assert not [a for a in firing if a["alertname"] in ("A4CAgentDown", "A4CHostDown")], firing

    monitored.agents["agent1"].stop()

    def fired(name: str) -> typing.Callable[[], list[dict[str, str]]]:
        return lambda: [a for a in server.firing() if a["alertname"] == name]

    agent_down = wait.wait_until(fired("A4CAgentDown"), timeout=30, message="A4CAgentDown firing")
    assert [(a["instance"], a["job"], a["severity"]) for a in agent_down] == [("agent1", "a4c-agent", "warning")]
    # The control plane marks the host down after reconciler.host_down_after (8 s here), then the alert fires.
    host_down = wait.wait_until(fired("A4CHostDown"), timeout=60, message="A4CHostDown firing")
    assert [(a["status"], a["severity"]) for a in host_down] == [("down", "warning")]
    value = server.api("query", query='max without (instance) (a4c_hosts{job="a4c-controlplane", status="down"})')["result"]
    assert [r["value"][1] for r in value] == ["1"]
