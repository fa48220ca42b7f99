"""Whether this host's Docker can cap a workspace's disk at its ``disk_gb``. Pure.

Docker honours ``--storage-opt size=`` (agent/domain/containers.py passes it)
only on some storage drivers: overlay2 when its backing filesystem is xfs
mounted with project quotas (``prjquota``/``pquota``), btrfs, and zfs. On
anything else (overlay2 on ext4, vfs, the containerd snapshotters) the size
is refused, so a workspace's ``disk_gb`` is a reservation that placement
honours but nothing enforces. The agent decides once Docker answers
(agent/disk_limits.py reads ``docker info`` and /proc/mounts), reports it in
its disk reports, and docs/operations/disk.md says the same for operators.
"""

from __future__ import annotations

import dataclasses
import typing

# docker.enforce_disk_limit (agent/settings.py).
Setting = typing.Literal["auto", "true", "false"]

PROJECT_QUOTA = frozenset({"prjquota", "pquota"})
NEEDS = "it needs overlay2 on xfs mounted with prjquota, or the btrfs or zfs storage driver"


@dataclasses.dataclass(frozen=True)
class Mount:
    mountpoint: str
    fstype: str
    options: frozenset[str]


@dataclasses.dataclass(frozen=True)
class Decision:
    enforced: bool
    reason: str


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_of(path: str, proc_mounts: str) -> Mount | None:
    """The mount holding ``path`` (longest mount point that is a prefix of it; the last one mounted wins a tie)."""
    best: Mount | None = None
    target = path.rstrip("/") or "/"
    for line in proc_mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point = _unescape(fields[1]).rstrip("/") or "/"
        inside = point == "/" or target == point or target.startswith(point + "/")
        if inside and (best is None or len(point) >= len(best.mountpoint)):
            best = Mount(point, fields[2], frozenset(fields[3].split(",")))
    return best


def driver_status(info: typing.Mapping[str, typing.Any]) -> dict[str, str]:
    """``docker info``'s DriverStatus ([[key, value], ...]) as a dict."""
    out: dict[str, str] = {}
    for pair in info.get("DriverStatus") or []:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            out[str(pair[0])] = str(pair[1])
    return out


def capability(info: typing.Mapping[str, typing.Any], mount: Mount | None) -> Decision:
    """Whether Docker (``info``, whose DockerRootDir is on ``mount``) can cap a container's writable layer, and why (or why not)."""
    driver = str(info.get("Driver") or "unknown")
    root = str(info.get("DockerRootDir") or "the Docker data root")
    if driver == "btrfs":
        return Decision(True, "btrfs: each workspace's subvolume gets a quota of its disk_gb")
    if driver == "zfs":
        return Decision(True, "zfs: each workspace's dataset gets a quota of its disk_gb")
    if driver != "overlay2":
        return Decision(False, f"{driver} storage driver: Docker cannot cap a container's disk there; {NEEDS}")
    backing = driver_status(info).get("Backing Filesystem") or (mount.fstype if mount else "an unknown filesystem")
    if backing != "xfs":
        return Decision(False, f"overlay2 on {backing}: Docker cannot cap a container's disk there; it needs xfs mounted with prjquota")
    if mount is None:
        return Decision(False, f"overlay2 on xfs, but the agent cannot see how {root} is mounted, so it cannot tell whether prjquota is on")
    if mount.options & PROJECT_QUOTA:
        return Decision(True, f"overlay2 on xfs with prjquota ({mount.mountpoint}): each workspace's writable layer is capped at its disk_gb")
    return Decision(
        False, f"overlay2 on xfs mounted without prjquota ({mount.mountpoint}): Docker cannot cap a container's disk there; mount it with prjquota"
    )


def decide(setting: Setting, able: Decision) -> Decision:
    """What the agent reports under docker.enforce_disk_limit: ``false`` never enforces; ``auto`` and ``true`` enforce where ``able``.

    Under ``true`` the daemon refuses to start where it cannot (:func:`refusal`), and creates always ask Docker for the size
    (:func:`asks_size`), so a Docker that lost the ability later fails them rather than running them uncapped.
    """
    if setting == "false":
        return Decision(False, "docker.enforce_disk_limit is false" + (f" (this host could enforce: {able.reason})" if able.enforced else ""))
    return able


def asks_size(setting: Setting, decision: Decision | None) -> bool:
    """Whether a create passes disk_gb to Docker as a storage-opt size (``decision`` None: Docker has not answered yet)."""
    return setting == "true" or (setting == "auto" and decision is not None and decision.enforced)


def refusal(setting: Setting, able: Decision) -> str | None:
    """The error to stop the agent with, or None: ``true`` demands enforcement this host cannot give."""
    if setting == "true" and not able.enforced:
        return f"docker.enforce_disk_limit is true, but this host cannot enforce disk limits: {able.reason} (set it to auto to run anyway)"
    return None
