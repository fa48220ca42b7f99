"""What "disk used" means, everywhere: ``df``'s definition. Pure.

A filesystem of ``size`` bytes has ``used`` bytes in files and ``free`` bytes
that an unprivileged process can still write. The rest (ext4 keeps 5 % for
root by default) is neither: no workspace or image can ever use it. So:

* capacity = used + free (what ``df`` calls Size minus the reserved blocks);
* percent used = used / capacity (``df``'s Use%);
* room left = free.

The agent's cleanup watermarks, the control plane's placement (least disk used,
and whether a workspace's reservation still fits), the API, the CLI and the
dashboard all use these, so "26 % used" means one thing.
docs/operations/disk.md says the same for operators.
"""

from __future__ import annotations

import typing


def capacity(size: int, used: int, free: int | None) -> int:
    """Bytes usable on a filesystem: ``used + free``; ``size`` when the free figure is unknown."""
    return used + free if free is not None else size


def percent_used(size: int, used: int, free: int | None) -> float:
    usable = capacity(size, used, free)
    return 100.0 * used / usable if usable > 0 else 0.0


# A workspace's disk_gb is GiB, as placement counts it (controlplane/domain/placement.py) and as Docker reads a
# storage-opt size of "20G" (agent/domain/containers.py).
GiB = 1024**3


def reserved_bytes(disk_gb: int) -> int:
    return disk_gb * GiB


def over(used: int | None, disk_gb: int) -> bool | None:
    """Whether a workspace writing ``used`` bytes exceeds its reservation; None when its use is unknown."""
    return None if used is None else used > reserved_bytes(disk_gb)


def newly_over(previous: typing.Mapping[str, int] | None, current: typing.Mapping[str, int], disk_gb: typing.Mapping[str, int]) -> list[str]:
    """Workspace ids over their reservation in ``current`` that were not in ``previous`` (both: a disk report's ``workspaces``).

    ``disk_gb`` holds the reservations of the workspaces to judge; any other id is skipped.
    """
    before = previous or {}
    return [wid for wid, used in current.items() if wid in disk_gb and over(used, disk_gb[wid]) and not over(before.get(wid), disk_gb[wid])]
