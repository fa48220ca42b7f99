"""Where an image build goes: any host that can take a command, never judged on workspace CPUs or memory."""

from __future__ import annotations

import datetime

from controlplane.domain import build_placement as bp

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
FRESH = datetime.timedelta(seconds=60)


def _host(name: str, **kw: object) -> bp.BuildHost:
    values: dict = {"id": name, "name": name, "status": "active", "last_heartbeat": NOW, "disk_used_bytes": 10, "disk_total_bytes": 100}
    values.update(kw)
    return bp.BuildHost(**values)


def test_the_host_with_the_fewest_builds_in_flight_wins_then_the_least_disk() -> None:
    choice = bp.place(
        [_host("a", builds_in_flight=2), _host("b", builds_in_flight=1, disk_used_bytes=90), _host("c", builds_in_flight=1)], NOW, fresh=FRESH
    )
    assert choice.host is not None and choice.host.name == "c"
    assert choice.reason.startswith("c: 1 other build in flight there, the fewest of 3 hosts that can build")
    assert "cpu" not in choice.reason.split("(")[0]


def test_hosts_that_cannot_take_a_command_are_skipped_and_named_when_none_is_left() -> None:
    stale = NOW - datetime.timedelta(seconds=300)
    hosts = [_host("a", status="down"), _host("b", cordoned=True), _host("c", last_heartbeat=stale)]
    choice = bp.place(hosts, NOW, fresh=FRESH)
    assert choice.host is None
    assert choice.reason == "waiting for a host that can build: 1 down, 1 cordoned, 1 has a stale heartbeat"
    assert bp.place([], NOW, fresh=FRESH).reason == "waiting for a host that can build: no hosts are enrolled"


def test_a_host_without_a_disk_report_can_still_build_but_ranks_last_among_equals() -> None:
    choice = bp.place([_host("a", disk_used_bytes=None), _host("b", disk_used_bytes=99)], NOW, fresh=FRESH)
    assert choice.host is not None and choice.host.name == "b"
