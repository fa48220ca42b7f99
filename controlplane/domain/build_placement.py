"""Choose the host for an image build: a pure decision, apart from workspace placement.

A build never competes with workspaces for reserved CPUs or memory: agents
run builds in their own build slots (``builds.concurrency``,
agent/builds.py) and queue the rest in line, so any host that can take a
command can take a build. Eligible: status ``active``, not draining, not
cordoned, a fresh heartbeat. Ranking: the fewest builds already in flight
there (queued, dispatched or running), then the least disk used as a
fraction (no report counts as full), then the most memory not reserved by
workspaces (a build uses real memory), then the name and id.

Usage::

    choice = build_placement.place(hosts, now, fresh=timedelta(seconds=60))
    choice.host          # None when no host can build: choice.reason says why
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
import uuid

from controlplane.domain import placement
from controlplane.domain.states import HostStatus


@dataclasses.dataclass(frozen=True)
class BuildHost:
    id: str | uuid.UUID
    name: str
    status: str
    last_heartbeat: datetime.datetime | None
    builds_in_flight: int = 0
    cordoned: bool = False
    draining: bool = False
    disk_used_bytes: int | None = None
    disk_total_bytes: int = 0
    free_memory_mb: int = 0

    @property
    def disk_fraction(self) -> float:
        if self.disk_used_bytes is None or self.disk_total_bytes <= 0:
            return 1.0
        return self.disk_used_bytes / self.disk_total_bytes


@dataclasses.dataclass(frozen=True)
class Choice:
    host: BuildHost | None
    reason: str


def _rejection(host: BuildHost, now: datetime.datetime, fresh: datetime.timedelta) -> placement.Code | None:
    if host.status == HostStatus.DOWN:
        return placement.Code.DOWN
    if host.status == "draining" or host.draining:
        return placement.Code.DRAINING
    if host.status != HostStatus.ACTIVE:
        return placement.Code.NOT_ACTIVE
    if host.cordoned:
        return placement.Code.CORDONED
    if host.last_heartbeat is None:
        return placement.Code.NO_HEARTBEAT
    if now - host.last_heartbeat > fresh:
        return placement.Code.STALE_HEARTBEAT
    return None


def place(hosts: typing.Iterable[BuildHost], now: datetime.datetime, *, fresh: datetime.timedelta) -> Choice:
    """The host a new build goes to, and the reason shown on its job."""
    hosts = list(hosts)
    counts: dict[placement.Code, int] = {}
    eligible: list[BuildHost] = []
    for host in hosts:
        code = _rejection(host, now, fresh)
        if code is None:
            eligible.append(host)
        else:
            counts[code] = counts.get(code, 0) + 1
    if not eligible:
        why = placement.summary(len(hosts), counts).removeprefix("no eligible host: ")
        return Choice(None, f"waiting for a host that can build: {why}")
    eligible.sort(key=lambda h: (h.builds_in_flight, h.disk_fraction, -h.free_memory_mb, h.name, str(h.id)))
    best, n = eligible[0], len(eligible)
    busy = f"{best.builds_in_flight} other build{'s' if best.builds_in_flight != 1 else ''} in flight there"
    return Choice(
        best, f"{best.name}: {busy}, the fewest of {n} host{'s' if n != 1 else ''} that can build (builds use build slots, not workspace CPUs)"
    )
