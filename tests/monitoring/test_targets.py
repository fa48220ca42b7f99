"""monitoring/ansible/prometheus-targets.yml: file_sd targets from an inventory."""

from __future__ import annotations

import json
import pathlib

from tests.monitoring import prometheus


def _read(targets: pathlib.Path, job: str) -> dict[str, list[str]]:
    return {group["labels"]["instance"]: group["targets"] for group in json.loads((targets / f"{job}.json").read_text())}


def test_agents_are_scraped_where_their_metrics_listen_and_named_by_the_inventory(tmp_path: pathlib.Path) -> None:
    inventory = {
        "a4c_agents": {
            "hosts": {
                "node-01.example.com": None,
                "node-02.example.com": {"ansible_host": "10.0.0.2", "a4c_agent_metrics_host": "0.0.0.0"},
                "node-03.example.com": {"ansible_host": "10.0.0.3", "a4c_agent_metrics_host": "10.9.0.3", "a4c_agent_metrics_port": 9999},
                "node-04.example.com": {"ansible_host": "fd00::4", "a4c_node_exporter_port": 9101},
            }
        },
        "a4c_controlplane": {"hosts": {"cp-1.example.com": {"a4c_controlplane_http_port": 8081}, "cp-2.example.com": {"ansible_host": "10.0.1.2"}}},
        "a4c_search_sync": {
            "hosts": {
                "cp-1.example.com": {"a4c_search_sync_metrics_host": "127.0.0.1"},
                "sync-1.example.com": {"ansible_host": "10.0.2.1", "a4c_search_sync_metrics_host": "10.9.2.1", "a4c_search_sync_metrics_port": 9471},
            }
        },
    }
    targets = prometheus.write_targets(inventory, tmp_path)
    assert _read(targets, "a4c-agent") == {
        "node-01.example.com": ["node-01.example.com:9469"],
        "node-02.example.com": ["10.0.0.2:9469"],
        "node-03.example.com": ["10.9.0.3:9999"],
        "node-04.example.com": ["[fd00::4]:9469"],
    }
    assert _read(targets, "node") == {
        "node-01.example.com": ["node-01.example.com:9100"],
        "node-02.example.com": ["10.0.0.2:9100"],
        "node-03.example.com": ["10.0.0.3:9100"],
        "node-04.example.com": ["[fd00::4]:9101"],
    }
    assert _read(targets, "a4c-controlplane") == {"cp-1.example.com": ["cp-1.example.com:8081"], "cp-2.example.com": ["10.0.1.2:8080"]}
    assert _read(targets, "a4c-search-sync") == {"cp-1.example.com": ["cp-1.example.com:9470"], "sync-1.example.com": ["10.9.2.1:9471"]}


def test_an_inventory_without_a_group_gives_an_empty_target_file(tmp_path: pathlib.Path) -> None:
    targets = prometheus.write_targets({"a4c_agents": {"hosts": {"node-01": None}}}, tmp_path)
    assert json.loads((targets / "a4c-controlplane.json").read_text()) == []
    assert json.loads((targets / "a4c-search-sync.json").read_text()) == []
    assert list(_read(targets, "a4c-agent")) == ["node-01"]
