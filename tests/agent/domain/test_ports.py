"""Choosing host ports once (agent/domain/ports.py): recorded ones kept, new ones from the range, conflicts named."""

from __future__ import annotations

import pytest

from agent.domain import ports


def test_recorded_ports_are_kept_even_when_they_look_taken() -> None:
    chosen = ports.choose(["22/tcp"], recorded={"22/tcp": 20005}, others=(), port_range=(20000, 20010), seed="ws", is_free=lambda p: False)
    assert chosen == {"22/tcp": 20005}


def test_new_ports_skip_other_workspaces_and_ports_in_use() -> None:
    everything = set(range(20000, 20011))
    busy = {20001, 20002}
    others = everything - busy - {20007, 20009}
    chosen = ports.choose(["22/tcp", "80/tcp"], recorded={}, others=others, port_range=(20000, 20010), seed="x", is_free=lambda p: p not in busy)
    assert sorted(chosen.values()) == [20007, 20009]


def test_an_exhausted_range_says_so() -> None:
    with pytest.raises(ports.PortsExhausted, match="20000-20001"):
        ports.choose(["22/tcp"], recorded={}, others={20000}, port_range=(20000, 20001), seed="x", is_free=lambda p: p != 20001)


def test_bad_ranges_are_refused() -> None:
    assert ports.parse_range("20000-32000") == (20000, 32000)
    for bad in ("20000", "b-c", "3-2", "0-10", "1-70000"):
        with pytest.raises(ValueError):
            ports.parse_range(bad)


def test_a_docker_bind_error_becomes_a_reason_naming_the_port() -> None:
    error = "driver failed programming external connectivity on endpoint a4c-x: Bind for 127.0.0.1:20007 failed: port is already allocated"
    reason = ports.conflict_in(error, {"22/tcp": 20007}, "127.0.0.1")
    assert reason is not None and "host port 20007" in reason and "22/tcp" in reason
    assert ports.conflict_in("no such image", {"22/tcp": 20007}, "127.0.0.1") is None


def test_bindings_read_only_named_host_ports() -> None:
    inspect = {"HostConfig": {"PortBindings": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "20001"}], "80/tcp": [{"HostIp": "", "HostPort": ""}]}}}
    assert ports.bindings(inspect) == {"22/tcp": 20001}
