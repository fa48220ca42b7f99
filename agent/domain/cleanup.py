"""The cleanup plan: what to remove, in what order, given the host's facts.

Pure: the caller gathers facts from Docker and psutil, this module decides.
The order, from cheapest loss to dearest:

1. exited a4c containers of this host past the grace period, except
   workspaces stopped on command (the control plane still wants those);
2. dangling images;
3. unused build cache;
4. only under disk pressure (the run started at or above the high
   watermark): least-recently-used a4c images of this host that no
   container uses, until the projected use is below the low watermark.

Invariants the tests pin down: a running container is never removed, an
image any container uses (a4c or not) is never removed, a container without
this host's a4c labels is never touched.
"""

from __future__ import annotations

import dataclasses
import typing

from agent.domain import containers as spec
from shared.domain import disk as disk_rule

REMOVE_CONTAINER = "remove-container"
PRUNE_DANGLING = "prune-dangling-images"
PRUNE_BUILD_CACHE = "prune-build-cache"
REMOVE_IMAGE = "remove-image"

# States of a container that is not running and holds nothing a user is
# attached to; "created" is a container whose start never happened.
_DEAD_STATES = {"exited", "dead", "created"}


@dataclasses.dataclass(frozen=True)
class ContainerFact:
    id: str
    name: str
    state: str
    image_id: str
    labels: typing.Mapping[str, str]
    created_at: float
    finished_at: float | None = None
    size_rw: int = 0


@dataclasses.dataclass(frozen=True)
class ImageFact:
    id: str
    tags: tuple[str, ...]
    labels: typing.Mapping[str, str]
    unique_size: int
    last_used: float

    @property
    def dangling(self) -> bool:
        return not [t for t in self.tags if t != "<none>:<none>"]


@dataclasses.dataclass(frozen=True)
class Policy:
    host_id: str
    high_watermark: float
    low_watermark: float
    exited_grace: float
    retained_workspaces: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Disk:
    """A measured filesystem. Percent is ``df``'s (shared/domain/disk.py): reserved blocks count as neither used nor free."""

    path: str
    total: int
    used: int
    free: int | None = None

    @property
    def capacity(self) -> int:
        return disk_rule.capacity(self.total, self.used, self.free)

    @property
    def percent(self) -> float:
        return disk_rule.percent_used(self.total, self.used, self.free)


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str
    target: str
    reason: str
    bytes: int = 0
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    pressure: bool
    percent_before: float | None
    projected_percent: float | None

    def of_kind(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]


def plan(
    containers: typing.Sequence[ContainerFact],
    images: typing.Sequence[ImageFact],
    disk: Disk | None,
    policy: Policy,
    *,
    now: float,
    build_cache_bytes: int = 0,
) -> Plan:
    actions: list[Action] = []
    removed_containers: set[str] = set()

    for c in sorted(containers, key=lambda c: (c.finished_at or c.created_at, c.id)):
        if not spec.is_owned(c.labels, policy.host_id) or c.state not in _DEAD_STATES:
            continue
        if c.labels.get(spec.WORKSPACE) in policy.retained_workspaces:
            continue
        since = c.finished_at if c.finished_at else c.created_at
        if now - since < policy.exited_grace:
            continue
        actions.append(Action(REMOVE_CONTAINER, c.id, f"{c.state} for {now - since:.0f}s", c.size_rw))
        removed_containers.add(c.id)

    # Images any remaining container uses, whoever owns the container.
    in_use = {c.image_id for c in containers if c.id not in removed_containers}

    dangling = [i for i in images if i.dangling and i.id not in in_use]
    if dangling:
        actions.append(Action(PRUNE_DANGLING, "", f"{len(dangling)} dangling image(s)", sum(i.unique_size for i in dangling)))
    if build_cache_bytes > 0:
        actions.append(Action(PRUNE_BUILD_CACHE, "", "unused build cache", build_cache_bytes))

    pressure = disk is not None and disk.percent >= policy.high_watermark
    if disk is not None and pressure:
        freed = sum(a.bytes for a in actions)
        candidates = [i for i in images if not i.dangling and i.id not in in_use and spec.is_owned(i.labels, policy.host_id)]
        for image in sorted(candidates, key=lambda i: (i.last_used, i.id)):
            if _percent(disk, freed) < policy.low_watermark:
                break
            actions.append(Action(REMOVE_IMAGE, image.id, "least recently used", image.unique_size, image.tags))
            freed += image.unique_size

    total_freed = sum(a.bytes for a in actions)
    return Plan(
        actions=tuple(actions),
        pressure=pressure,
        percent_before=round(disk.percent, 2) if disk else None,
        projected_percent=round(_percent(disk, total_freed), 2) if disk else None,
    )


def _percent(disk: Disk, freed: int) -> float:
    return 100.0 * max(0, disk.used - freed) / disk.capacity if disk.capacity else 0.0


def fullest(usages: typing.Iterable[Disk]) -> Disk | None:
    """The path that decides pressure: the one closest to full."""
    found = [u for u in usages if u.total > 0]
    return max(found, key=lambda u: u.percent) if found else None
