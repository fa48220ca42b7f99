"""Stable host ports for workspaces: choosing them once, and naming a conflict.

Errors::

    PortsExhausted         no free port is left in the configured range

Docker picks a new random host port on every start when a binding names
none; a binding that names one is kept in the container's HostConfig, so it
survives stop/start, agent and dockerd restarts and host reboots. So the
agent chooses each published port itself, once, from ``docker.port_range``
(above the kernel's ephemeral range is not required: the range is the
operator's), records the choice in its state dir (agent/store.py) and passes
it to Docker. A recreated container of the same workspace gets the recorded
ports again. A port that something else took meanwhile is never silently
swapped for another: the start fails with :func:`taken_reason`.
"""

from __future__ import annotations

import hashlib
import typing

# Phrases dockerd uses when a published port cannot be bound (userland proxy or port mapper).
_CONFLICT_PHRASES = ("port is already allocated", "address already in use")


class PortsExhausted(Exception):
    """Every port in the range is recorded for another workspace or in use."""


def parse_range(text: str) -> tuple[int, int]:
    """``"20000-32000"`` -> (20000, 32000); ValueError names what is wrong."""
    low, sep, high = text.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise ValueError(f"expected LOW-HIGH, e.g. 20000-32000, got {text!r}") from None
    if not sep or not 1 <= lo <= hi <= 65535:
        raise ValueError(f"expected 1 <= LOW <= HIGH <= 65535, got {text!r}")
    return lo, hi


def key(container_port: int, protocol: str) -> str:
    """Docker's name for a container port: ``22/tcp``."""
    return f"{container_port}/{protocol}"


def choose(
    wanted: typing.Sequence[str],
    *,
    recorded: typing.Mapping[str, int],
    others: typing.Collection[int],
    port_range: tuple[int, int],
    seed: str,
    is_free: typing.Callable[[int], bool],
) -> dict[str, int]:
    """A host port for each wanted container port key.

    A recorded port is kept as it is, free or not (a conflict is reported at
    start, never papered over). New ones come from ``port_range``, skipping
    ports recorded for other workspaces (``others``) and ports ``is_free``
    says are in use; the search starts at a point derived from ``seed`` (the
    workspace id), so agents sharing a daemon rarely race for the same port.
    """
    lo, hi = port_range
    size = hi - lo + 1
    start = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % size
    out: dict[str, int] = {}
    used = set(others)
    for want in wanted:
        if want in recorded:
            out[want] = recorded[want]
            used.add(recorded[want])
    for want in wanted:
        if want in out:
            continue
        for step in range(size):
            port = lo + (start + step) % size
            if port not in used and is_free(port):
                out[want] = port
                used.add(port)
                start = (start + step + 1) % size
                break
        else:
            raise PortsExhausted(f"no free host port left in docker.port_range {lo}-{hi} for container port {want}")
    return out


def bindings(inspect: typing.Mapping[str, typing.Any]) -> dict[str, int]:
    """The host ports a container is set to publish (``HostConfig.PortBindings``), by container port key."""
    found = ((inspect.get("HostConfig") or {}).get("PortBindings")) or {}
    out = {}
    for port_key, binds in found.items():
        for bind in binds or []:
            if str(bind.get("HostPort") or "").isdigit():
                out[port_key] = int(bind["HostPort"])
                break
    return out


def taken_reason(port_key: str, host_port: int, address: str) -> str:
    """The workspace's state reason when its recorded host port is held by something else."""
    return (
        f"host port {host_port} ({address}, published for container port {port_key}) is in use by another program "
        f"on this host; the workspace keeps that port: free it and start the workspace again"
    )


def conflict_in(error: str, wanted: typing.Mapping[str, int], address: str) -> str | None:
    """The reason for a Docker start error that is a port conflict on one of ``wanted``; None for any other error."""
    text = error.lower()
    if not any(phrase in text for phrase in _CONFLICT_PHRASES):
        return None
    for port_key, host_port in wanted.items():
        if f":{host_port}" in text:
            return taken_reason(port_key, host_port, address)
    # Docker did not say which: name them all.
    listed = ", ".join(f"{p} ({k})" for k, p in wanted.items())
    return f"a host port of this workspace ({listed}) is in use by another program on this host; free it and start again"
