"""Which recorded image builds a host no longer holds.

Errors: none; inputs are trusted snapshots the reconciler built.

Usage, once per host per reconcile period::

    for gone in host_images.forgotten(recorded, inventory_images, inventory_at, settle=timedelta(seconds=...)):
        ...  # delete its host_images row: the next create there waits for a rebuild

``host_images`` rows say where an image was built; creates go straight to a
host only if it has the image (controlplane/services/image_waits.py makes
them wait for a build otherwise). Cleanup under disk pressure removes unused
a4c images (agent/cleanup.py) and the agent then sends an inventory at once,
so the inventory is the truth: a recorded build whose tag (or, without a tag,
whose Docker image id) the host's latest inventory does not show is gone.

An inventory is only trusted for images recorded at least ``settle`` before
it was applied: an inventory whose Docker listing ran just before a build
finished can arrive after that build's result, and must not unrecord it.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing


@dataclasses.dataclass(frozen=True)
class Recorded:
    """A host_images row: image ``image_id`` built on the host as ``tag`` (Docker id ``docker_image_id``) at ``built_at``."""

    image_id: str
    tag: str
    docker_image_id: str
    built_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Present:
    """An a4c image in the host's inventory."""

    docker_image_id: str
    tags: tuple[str, ...] = ()


def forgotten(
    recorded: typing.Iterable[Recorded],
    present: typing.Iterable[Present],
    inventory_at: datetime.datetime,
    *,
    settle: datetime.timedelta,
) -> list[Recorded]:
    """The recorded builds the inventory (applied at ``inventory_at``) shows gone, sorted by image id."""
    present = list(present)
    tags = {t for p in present for t in p.tags}
    ids = {p.docker_image_id for p in present}
    gone = []
    for row in sorted(recorded, key=lambda r: r.image_id):
        if inventory_at - row.built_at < settle:
            continue
        held = row.tag in tags if row.tag else row.docker_image_id in ids
        if not held:
            gone.append(row)
    return gone
