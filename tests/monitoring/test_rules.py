"""The shipped Prometheus files pass promtool, and every alert has a unit test that fires it and one that does not."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import yaml

from tests.monitoring import prometheus


def _promtool(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([prometheus.binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_accepts_the_rules() -> None:
    done = _promtool("check", "rules", str(prometheus.RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(prometheus.alerts())} rules found" in done.stdout


def test_promtool_accepts_the_config_with_targets_made_from_the_example_inventory(tmp_path: pathlib.Path) -> None:
    inventory = yaml.safe_load((prometheus.ROOT / "ansible" / "inventory.example.yml").read_text())
    inventory["a4c_controlplane"] = {"hosts": {"cp-1.example.com": None, "cp-2.example.com": None}}
    targets = prometheus.write_targets(inventory, tmp_path)
    # Installed as the config's comments say: rules/, targets/ and the token beside prometheus.yml.
    shutil.copytree(prometheus.RULES.parent, tmp_path / "rules")
    (tmp_path / "a4c-metrics.token").write_text("secret\n")
    shutil.copy(prometheus.CONFIG, tmp_path / "prometheus.yml")
    done = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "rules found" in done.stdout
    for job in ("a4c-agent", "a4c-controlplane", "node"):
        assert (targets / f"{job}.json").is_file(), job


def test_promtool_unit_tests_pass() -> None:
    done = _promtool("test", "rules", prometheus.RULE_TESTS.name, cwd=prometheus.RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() -> None:
    cases = yaml.safe_load(prometheus.RULE_TESTS.read_text())
    assert cases["rule_files"] == [prometheus.RULES.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for check in test.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(prometheus.alerts())
    assert names - fires == set(), "alerts no unit test fires"
    assert names - quiet == set(), "alerts no unit test shows quiet"
    assert (fires | quiet) - names == set(), "unit tests of alerts that do not exist"


def test_every_alert_has_a_severity_a_summary_and_a_runbook() -> None:
    for name, rule in prometheus.alerts().items():
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), name
        assert rule["annotations"].get("summary"), name
        assert len(rule["annotations"].get("runbook", "")) > 80, f"{name}: a runbook says what to do"
        assert name in (prometheus.ROOT / "docs" / "operations" / "monitoring.md").read_text(), f"{name} is documented"


def test_the_dashboards_are_grafana_json_with_a_prometheus_datasource_variable() -> None:
    assert {p.stem for p in prometheus.DASHBOARDS} == {"a4c-fleet", "a4c-jobs", "a4c-sync"}
    uids = set()
    for path in prometheus.DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in board["panels"]:
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", f"{path.name}: {panel['title']}"
    assert len(uids) == len(prometheus.DASHBOARDS)
