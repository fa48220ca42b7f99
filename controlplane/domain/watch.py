"""Blocking reads' decisions: what ``wait`` means, how long a read may block, and what a change notification says. Pure.

A blocking read (``GET /v1/jobs/{id}?index=N&wait=30s``, in the style of
Nomad's blocking queries) answers at once when the object's index (its
``version``) is past ``N``, else when it changes or ``wait`` runs out.
controlplane/api/watches.py holds the waiting requests; these functions
decide for it.
"""

from __future__ import annotations

import dataclasses
import re
import uuid

KINDS = frozenset({"job", "workspace"})

# Go-style durations as Nomad and Consul take them: "30s", "5m", "1m30s", "250ms"; a bare number is seconds.
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
LONGEST = 32  # characters of a duration
# What parse_duration takes, for the API's schema.
PATTERN = r"^([0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"


def parse_duration(text: str) -> float:
    """Seconds from ``"30s"``, ``"5m"``, ``"1m30s"``, ``"250ms"`` or ``"45"``; ValueError saying what is expected."""
    expected = "expected a duration like 30s, 5m, 1m30s, 250ms or a number of seconds"
    if not text or len(text) > LONGEST:
        raise ValueError(expected)
    if _NUMBER.match(text):
        return float(text)
    seconds, at = 0.0, 0
    for found in _PART.finditer(text):
        if found.start() != at:
            raise ValueError(expected)
        seconds += float(found.group(1)) * _UNIT[found.group(2)]
        at = found.end()
    if at != len(text) or at == 0:
        raise ValueError(expected)
    return seconds


def blocking_time(asked: float | None, *, default: float, longest: float, live: bool, fallback: float) -> float:
    """How long a read may block: the asked wait (or ``default``) clamped to ``longest``, and to ``fallback``
    while this instance hears no changes (its LISTEN connection is down), so that its clients come back soon."""
    wait = min(default if asked is None else asked, longest)
    return wait if live else min(wait, fallback)


def answers_now(current: int | None, asked: int) -> bool:
    """A read answers at once when the object is gone (None) or its index moved past the one the client has."""
    return current is None or current > asked


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    kind: str
    id: uuid.UUID
    index: int


def parse_change(payload: str) -> Change | None:
    """``kind:id:index`` as migration 0013's trigger NOTIFYs it; None for anything else."""
    kind, _, rest = payload.partition(":")
    ident, _, index = rest.partition(":")
    if kind not in KINDS or not index.isdigit():
        return None
    try:
        return Change(kind, uuid.UUID(ident), int(index))
    except ValueError:
        return None
