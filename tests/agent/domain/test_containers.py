"""From a workspace spec to Docker's create request, and from Docker's answers back to workspace states."""

from __future__ import annotations

import typing

import pytest

from agent.domain import containers as c
from shared import messages

POLICY = c.RuntimePolicy(publish_address="127.0.0.1", cap_drop=("ALL",), cap_add=("CHOWN",))


def _spec(**kw: object) -> messages.WorkspaceSpec:
    values: dict[str, typing.Any] = {"workspace_id": "w1", "name": "n", "owner": "o", "image": "img:1", "cpus": 1.5, "memory_mb": 512}
    values.update(kw)
    return messages.WorkspaceSpec(**values)


def test_the_create_request_carries_every_limit_label_and_security_setting() -> None:
    spec = _spec(
        pids_limit=99,
        env={"A": "1"},
        ports=[messages.PortSpec(container_port=22), messages.PortSpec(container_port=53, protocol="udp")],
        command=["sleep", "1"],
    )
    container, host = c.create_request(spec, host_id="h1", job_id="j1", policy=POLICY)
    assert container["name"] == "a4c-h1-w1" and container["image"] == "img:1" and container["command"] == ["sleep", "1"]
    assert container["labels"] == {"a4c.managed": "true", "a4c.workspace": "w1", "a4c.host": "h1", "a4c.job": "j1"}
    assert container["environment"] == {"A": "1"}
    assert container["ports"] == [(22, "tcp"), (53, "udp")]
    assert host["nano_cpus"] == 1_500_000_000
    assert host["mem_limit"] == host["memswap_limit"] == 512 * 1024 * 1024
    assert host["pids_limit"] == 99
    assert host["privileged"] is False
    assert host["security_opt"] == ["no-new-privileges:true"]
    assert host["cap_drop"] == ["ALL"] and host["cap_add"] == ["CHOWN"]
    assert host["restart_policy"] == {"Name": "unless-stopped"}
    assert host["port_bindings"] == {"22/tcp": ("127.0.0.1",), "53/udp": ("127.0.0.1",)}
    assert "storage_opt" not in host


def test_a_disk_limit_is_passed_only_when_the_host_enforces_them() -> None:
    _, host = c.create_request(_spec(disk_gb=20), host_id="h", job_id=None, policy=POLICY)
    assert "storage_opt" not in host
    enforcing = c.RuntimePolicy(enforce_disk_limit=True)
    _, host = c.create_request(_spec(disk_gb=20), host_id="h", job_id=None, policy=enforcing)
    assert host["storage_opt"] == {"size": "20G"}


def test_restart_policy_no_and_a_network_are_honoured() -> None:
    _, host = c.create_request(_spec(), host_id="h", job_id=None, policy=c.RuntimePolicy(restart_policy="no", network="ws-net"))
    assert "restart_policy" not in host and host["network_mode"] == "ws-net"


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "-dash", "x" * 200, "sp ace"])
def test_a_workspace_id_that_cannot_name_a_container_is_refused(bad: str) -> None:
    with pytest.raises(c.SpecError, match="workspace_id"):
        c.container_name(bad, "h1")


def test_a_container_name_carries_the_host_so_agents_sharing_a_daemon_never_collide() -> None:
    assert c.container_name("ws-1", "0b1e5f2a-aaaa") == "a4c-0b1e5f2a-ws-1"
    assert c.container_name("ws-1", "0b1e5f2a-aaaa") != c.container_name("ws-1", "77777777-bbbb")


@pytest.mark.parametrize(
    ("labels", "owned"),
    [
        ({"a4c.managed": "true", "a4c.host": "h1"}, True),
        ({"a4c.managed": "true", "a4c.host": "h2"}, False),
        ({"a4c.host": "h1"}, False),
        ({"a4c.managed": "yes", "a4c.host": "h1"}, False),
        (None, False),
    ],
)
def test_only_this_hosts_managed_objects_are_owned(labels: dict | None, owned: bool) -> None:
    assert c.is_owned(labels, "h1") is owned


@pytest.mark.parametrize(
    ("status", "stopped", "state"),
    [
        ("running", False, "running"),
        ("restarting", False, "running"),
        ("paused", True, "running"),
        ("exited", False, "exited"),
        ("exited", True, "stopped"),
        ("dead", False, "exited"),
        ("created", False, "creating"),
        ("created", True, "stopped"),
        ("removing", False, "missing"),
    ],
)
def test_docker_status_maps_onto_workspace_states(status: str, stopped: bool, state: str) -> None:
    assert c.workspace_state(status, stopped_on_command=stopped) == state


def test_state_from_inspect_reports_ports_only_while_running_and_exit_codes_only_when_not() -> None:
    inspect = {
        "Id": "abc",
        "State": {"Status": "running", "ExitCode": 0},
        "NetworkSettings": {"Ports": {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32001"}], "80/tcp": None}},
    }
    state = c.state_from_inspect(inspect, workspace_id="w", stopped_on_command=False)
    assert state.state == "running" and state.exit_code is None and state.container_id == "abc"
    assert state.ports == [messages.PublishedPort(container_port=22, protocol="tcp", host_ip="127.0.0.1", host_port=32001)]
    died = c.state_from_inspect(
        {"Id": "abc", "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True}}, workspace_id="w", stopped_on_command=False
    )
    assert died.state == "exited" and died.exit_code == 137 and died.ports == [] and died.reason == "out of memory"


def test_summary_rows_give_the_same_ports_as_inspect() -> None:
    row = {"Ports": [{"IP": "127.0.0.1", "PrivatePort": 22, "PublicPort": 32001, "Type": "tcp"}, {"PrivatePort": 80, "Type": "tcp"}]}
    assert c.summary_ports(row) == [messages.PublishedPort(container_port=22, protocol="tcp", host_ip="127.0.0.1", host_port=32001)]
    assert c.name_of({"Names": ["/a4c-w1"]}) == "a4c-w1" and c.name_of({}) == ""
