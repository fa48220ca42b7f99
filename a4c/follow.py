"""Waiting loops: poll the API until a workspace reaches a state or jobs end, printing what changes.

Every loop has a deadline (``--timeout``) and polls every :data:`POLL` seconds;
the decisions (done? failed? what is new?) are in :mod:`a4c.progress`.
"""

from __future__ import annotations

import time
import typing

from a4c import client, errors, output, progress

POLL = 0.5  # seconds between polls: quick enough to feel live, slow enough to be no load on the API

Write = typing.Callable[[str], None]


def _get_or_none(api: client.Client, path: str) -> dict[str, typing.Any] | None:
    try:
        return api.get(path)
    except errors.ApiError as exc:
        if exc.status == 404:
            return None
        raise


def wait_for_workspace(
    api: client.Client, workspace: typing.Mapping[str, typing.Any], job_id: str, goal: str, timeout: float, note: Write
) -> tuple[dict[str, typing.Any], dict[str, typing.Any] | None]:
    """Poll until the workspace is ``goal`` and its job succeeded; :class:`errors.Failed` if it fails or time runs out."""
    began = time.monotonic()
    deadline = began + timeout
    last = ""
    while True:
        job = api.get(f"/v1/jobs/{job_id}")
        current = _get_or_none(api, f"/v1/workspaces/{workspace['id']}")
        line = progress.workspace_line(job, current)
        if line != last:
            note(f"[{time.monotonic() - began:5.1f}s] {line}")
            last = line
        verdict = progress.workspace_verdict(goal, job, current)
        if verdict.failure:
            raise errors.Failed(verdict.failure)
        if verdict.done:
            return job, current
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.Failed(f"timed out after {timeout:g} s waiting for workspace {workspace['name']} to be {goal}; last seen: {line}")
        time.sleep(min(POLL, left))


class _Lines:
    """Prints whole lines only, each prefixed (when several logs interleave), keeping a partial last line back."""

    def __init__(self, write: Write, prefix: str) -> None:
        self.write, self.prefix, self.partial = write, prefix, ""

    def add(self, text: str) -> None:
        *whole, self.partial = (self.partial + text).split("\n")
        for line in whole:
            self.write(self.prefix + line)

    def flush(self) -> None:
        if self.partial:
            self.write(self.prefix + self.partial)
            self.partial = ""


def follow_jobs(
    api: client.Client, jobs: typing.Sequence[typing.Mapping[str, typing.Any]], timeout: float, write: Write, note: Write
) -> list[dict[str, typing.Any]]:
    """Print each job's log (``write``) as it grows until every job has ended; returns the final jobs.

    Changes of status or reason (a build waiting for a host, say) go to
    ``note``. With more than one job (an image builds on every active host)
    each line is prefixed with the host's name.
    """
    deadline = time.monotonic() + timeout
    shown = {j["id"]: "" for j in jobs}
    lines = {j["id"]: _Lines(write, f"[{j.get('host_name') or output.short(j['id'])}] " if len(jobs) > 1 else "") for j in jobs}
    final: dict[str, dict[str, typing.Any]] = {}
    status = {j["id"]: j["status"] for j in jobs}
    said: dict[str, str] = {}
    while True:
        for job_id in shown:
            if job_id in final:
                continue
            job = api.get(f"/v1/jobs/{job_id}")
            tail = job.get("log_tail") or ""
            lines[job_id].add(progress.log_delta(shown[job_id], tail))
            shown[job_id] = tail
            status[job_id] = job["status"]
            line = progress.job_line(job)
            if said.get(job_id) != line:
                note(lines[job_id].prefix + line)
                said[job_id] = line
            if job["status"] in progress.FINAL_JOB:
                lines[job_id].flush()
                final[job_id] = job
        if len(final) == len(shown):
            return [final[j["id"]] for j in jobs]
        left = deadline - time.monotonic()
        if left <= 0:
            waiting = ", ".join(f"job {output.short(j)} is {status[j]}" for j in shown if j not in final)
            raise errors.Failed(f"timed out after {timeout:g} s waiting for the job to end; {waiting}")
        time.sleep(min(POLL, left))
