"""The decisions of the CLI's waiting loops, as pure functions of what the API last said.

:mod:`a4c.follow` watches and prints; this module decides whether a wait is
over, whether it failed, what line describes a change, and which part of a
job's log tail is new since the last poll.
"""

from __future__ import annotations

import dataclasses
import typing

Obj = typing.Mapping[str, typing.Any]

FINAL_JOB = frozenset({"succeeded", "failed", "cancelled"})
# Observed states a workspace does not leave by itself while we wait for another.
STUCK = frozenset({"failed", "lost", "exited", "deleted"})
GAP = "[… earlier log lines dropped: the API keeps only the tail …]\n"


@dataclasses.dataclass(frozen=True)
class Verdict:
    done: bool = False
    failure: str | None = None  # set when the wait is over and the operation failed

    @property
    def over(self) -> bool:
        return self.done or self.failure is not None


WAITING = Verdict()
DONE = Verdict(done=True)


def workspace_verdict(goal: str, job: Obj, workspace: Obj | None, *, accepted_version: int | None = None) -> Verdict:
    """Is the workspace ``goal`` ("running", "stopped" or "deleted") and its job over? ``workspace`` None: gone (404).

    ``accepted_version``: the workspace's version in the answer that accepted the
    job. A stuck state it still has at that version is the one the job is
    there to change (``start`` on a failed workspace), not the job's outcome,
    even once the job has succeeded (its state report may come after it).
    """
    if job["status"] in ("failed", "cancelled"):
        return Verdict(failure=f"job {job['id']} {job['status']}: {job.get('error') or job.get('reason') or 'no reason given'}")
    if goal == "deleted":
        return DONE if job["status"] == "succeeded" or workspace is None else WAITING
    if workspace is None:
        return Verdict(failure=f"the workspace was deleted while waiting for it to be {goal}")
    state = workspace["observed_state"]
    if state == goal and job["status"] == "succeeded":
        return DONE
    stale = accepted_version is not None and workspace.get("version", accepted_version + 1) <= accepted_version
    if state in STUCK and state != goal and not stale:
        return Verdict(failure=f"workspace {workspace['name']} is {state}: {workspace.get('state_reason') or 'no reason given'}")
    return WAITING


def workspace_line(job: Obj, workspace: Obj | None) -> str:
    """One progress line: the job's status and reason, then the workspace's state (and its reason, if different)."""
    line = _job_where(job, job["status"] != "succeeded")
    if workspace is None:
        return line + "; workspace gone"
    line += f"; workspace {workspace['observed_state']}"
    reason = workspace.get("state_reason")
    # A job waiting for a host repeats the workspace's reason and adds its place in the queue.
    if reason and not (job.get("reason") or "").startswith(reason):
        line += f": {reason}"
    ports = published(workspace)
    if workspace["observed_state"] == "running" and ports != "-":
        line += f" ({ports})"
    return line


def published(workspace: Obj) -> str:
    ports = workspace.get("published_ports") or []
    return ",".join(f"{p['host_ip']}:{p['host_port']}->{p['container_port']}/{p.get('protocol', 'tcp')}" for p in ports) or "-"


def _job_where(job: Obj, show_reason: bool) -> str:
    """``job running on h1``, then ``: reason`` if shown (the host is left out when the reason starts with it)."""
    host, reason = job.get("host_name"), job.get("reason") or ""
    line = f"job {job['status']}"
    if host and not (show_reason and reason.startswith(f"{host}:")):
        line += f" on {host}"
    return line + (f": {reason}" if show_reason and reason else "")


def job_line(job: Obj) -> str:
    # Running includes a build waiting on its agent for a build slot: the reason says so.
    return _job_where(job, job["status"] in ("queued", "pending", "dispatched", "running"))


def build_verdict(job: Obj) -> Verdict:
    if job["status"] == "succeeded":
        return DONE
    if job["status"] in FINAL_JOB:
        where = f" on {job['host_name']}" if job.get("host_name") else ""
        return Verdict(failure=f"build{where} {job['status']}: {job.get('error') or job.get('reason') or 'no error text'}")
    return WAITING


def log_delta(shown: str, tail: str) -> str:
    """The part of ``tail`` not printed yet, given that ``shown`` was the tail at the last poll.

    The API keeps a sliding window (the last N characters), so once the log
    outgrows it the new tail no longer starts with the old one: it is the end
    of ``shown`` followed by the new text. Take the longest end of ``shown``
    that the tail starts with (found by the last 256 characters, checked in
    full; shorter overlaps are tried one by one). If none, more was written
    between two reads than the window holds: say so, print the whole tail.
    """
    if tail.startswith(shown):
        return tail[len(shown) :]
    anchor = shown[-256:]
    end = len(shown)
    while (at := tail.rfind(anchor, 0, end)) >= 0:
        overlap = at + len(anchor)
        if shown.endswith(tail[:overlap]):
            return tail[overlap:]
        end = overlap - 1
    for overlap in range(min(len(anchor) - 1, len(tail)), 0, -1):
        if shown.endswith(tail[:overlap]):
            return tail[overlap:]
    return GAP + tail
