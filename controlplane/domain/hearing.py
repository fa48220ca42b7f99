""" "I cannot hear them" is not "they are dead": how far the control plane hears its agents.

Errors: none; pure functions over snapshots (no clock read, no I/O).

The events consumer records, per partition of ``<prefix>.events``, how far it
has applied everything (:func:`advance`, stored in ``event_progress`` by
controlplane/events/progress.py). The reconciler (controlplane/reconciler.py)
reads every partition's row and judges a host's silence up to the point the
whole fleet can be heard (:func:`heard`), never past it::

    hearing = heard(rows, now)                  # heard_until, resumed_at
    changes = reconcile.hosts_down(fleet, hearing.heard_until, grace, resumed_at=hearing.resumed_at)
    changes, disruption = hold_disruption(changes, active=..., threshold=0.55, min_hosts=2)

* **Applied through.** Caught up (the consumer's position reached the
  highwater of the broker's last fetch answer): everything appended before
  that answer arrived is applied, so the partition is heard until then (the
  control plane's clock). Behind: the broker's append time of the last
  applied record when the topic stamps one, else no progress. With the broker
  unreachable no answer arrives, so the position stands still.
* **Resumed at.** A position that jumps forward by more than ``gap`` at once
  means nothing could be heard in between (broker down, consumer lagging or
  stopped, the partition unowned): silence is counted again from that moment,
  so a host whose agent has yet to reconnect gets a whole ``host_down_after``
  (the reconciler adds ``kafka.retry_backoff_max``, the agents' longest
  reconnect wait).
* **Disruption.** When more than ``threshold`` of the active hosts (and at
  least ``min_hosts`` of them) would go down in one pass, none is marked down
  and the reason is raised instead, as Kubernetes' node lifecycle controller
  stops evicting in a fully disrupted zone: a whole fleet falling silent at
  once is more likely the network than every machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing

if typing.TYPE_CHECKING:
    from controlplane.domain import reconcile


@dataclasses.dataclass(frozen=True)
class Position:
    """One partition's row: applied through ``applied_through``; hearing (re)started at ``resumed_at``."""

    applied_through: datetime.datetime
    resumed_at: datetime.datetime


def applied_through(*, caught_up: bool, fetched_at: datetime.datetime | None, last_append: datetime.datetime | None) -> datetime.datetime | None:
    """How far a partition is applied after a fetch: the fetch's answer time when caught up, else the last record's append time (None: no progress)."""
    if caught_up:
        return fetched_at
    if last_append is not None and fetched_at is not None:
        return min(last_append, fetched_at)
    return last_append


def advance(previous: Position | None, at: datetime.datetime | None, gap: datetime.timedelta) -> Position | None:
    """The partition's new row (None: nothing to write). Never moves back; a jump over ``gap`` restarts hearing."""
    if at is None:
        return None
    if previous is None:
        return Position(at, at)
    if at <= previous.applied_through:
        return None
    resumed = at if at - previous.applied_through > gap else previous.resumed_at
    return Position(at, resumed)


@dataclasses.dataclass(frozen=True)
class Hearing:
    """How far the whole fleet is heard. ``resumed_at`` None: no gap known (judge from the last heartbeat alone)."""

    heard_until: datetime.datetime
    resumed_at: datetime.datetime | None
    deaf_for: datetime.timedelta  # now - heard_until: how long nothing could be heard


def heard(rows: typing.Iterable[Position], now: datetime.datetime) -> Hearing:
    """The slowest partition bounds what is heard; no row at all (no consumer has recorded progress yet) falls back to ``now``."""
    positions = list(rows)
    if not positions:
        return Hearing(now, None, datetime.timedelta(0))
    until = min(p.applied_through for p in positions)
    resumed = max(p.resumed_at for p in positions)
    return Hearing(until, resumed, max(now - until, datetime.timedelta(0)))


def hold_disruption(
    changes: list[reconcile.HostDown | reconcile.HostBack], *, active: int, threshold: float, min_hosts: int
) -> tuple[list[reconcile.HostDown | reconcile.HostBack], str | None]:
    """Drop every HostDown when too many active hosts would go down at once; returns the changes kept and the reason (None: no disruption)."""
    down = [c for c in changes if type(c).__name__ == "HostDown"]
    if not down or active < min_hosts or len(down) <= threshold * active:
        return changes, None
    names = ", ".join(c.host_name for c in down[:5]) + (", …" if len(down) > 5 else "")
    reason = (
        f"{len(down)} of {active} active hosts fell silent at once (more than {threshold:.0%}): {names}; "
        "marking hosts down is paused (a network or broker disruption is likelier than that many dead machines)"
    )
    return [c for c in changes if type(c).__name__ != "HostDown"], reason
