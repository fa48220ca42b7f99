"""When a due cron schedule fires: a pure decision about misfires.

A schedule is due when ``next_run_at <= now``. If the control plane was down
(or the schedule disabled) past its fire time, the run is a *misfire*: with
``run_once`` one catch-up build fires (never one per missed slot — a night of
downtime must not queue twelve builds of the same image); with ``skip`` none
does. Either way the next fire time is computed from ``now``, so a schedule
never fires twice for one slot.
"""

from __future__ import annotations

import dataclasses
import datetime


@dataclasses.dataclass(frozen=True)
class Decision:
    fire: bool
    missed: bool
    reason: str


def decide(due: datetime.datetime, now: datetime.datetime, *, grace: datetime.timedelta, policy: str) -> Decision:
    """Whether the slot ``due`` fires at ``now`` (``grace`` = how late is still on time)."""
    if due > now:
        return Decision(False, False, "not due yet")
    late = now - due
    if late <= grace:
        return Decision(True, False, "on time")
    if policy == "run_once":
        return Decision(True, True, f"missed by {int(late.total_seconds())}s; one catch-up run (misfire policy run_once)")
    return Decision(False, True, f"missed by {int(late.total_seconds())}s; skipped (misfire policy skip)")
