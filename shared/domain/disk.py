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


def capacity(size: int, used: int, free: int | None) -> int:
    """Bytes usable on a filesystem: ``used + free``; ``size`` when the free figure is unknown."""
    return used + free if free is not None else size


def percent_used(size: int, used: int, free: int | None) -> float:
    usable = capacity(size, used, free)
    return 100.0 * used / usable if usable > 0 else 0.0
