"""Waiting loops: watch the API until a workspace reaches a state or jobs end, printing what changes.

Every loop has a deadline (``--timeout``) and hears of each change as it
happens, through blocking reads (:mod:`a4c.watch`: polling only while the
API does not answer); the decisions (done? failed? what is new?) are in
:mod:`a4c.progress`.
"""

from __future__ import annotations

import time
import typing

from a4c import client, errors, output, progress, watch

Write = typing.Callable[[str], None]


def wait_for_workspace(
    api: client.Client, workspace: typing.Mapping[str, typing.Any], job_id: str, goal: str, timeout: float, note: Write
) -> tuple[dict[str, typing.Any], dict[str, typing.Any] | None]:
    """Watch until the workspace is ``goal`` and its job succeeded; :class:`errors.Failed` if it fails or time runs out."""
    began = time.monotonic()
    deadline = began + timeout
    job_path, ws_path = f"/v1/jobs/{job_id}", f"/v1/workspaces/{workspace['id']}"
    seen: dict[str, dict[str, typing.Any] | None] = {}
    last = "nothing yet"
    with watch.Watch(api, [job_path, ws_path], note) as changes:
        while True:
            got = changes.next(deadline - time.monotonic())
            if got is None:
                raise errors.Failed(f"timed out after {timeout:g} s waiting for workspace {workspace['name']} to be {goal}; last seen: {last}")
            path, doc = got
            if path == job_path and doc is None:
                raise errors.Failed(f"job {job_id} was deleted while waiting for workspace {workspace['name']} to be {goal}")
            seen[path] = doc
            if len(seen) < 2:
                continue  # each object comes first as it is now: decide once both have
            job, current = seen[job_path], seen[ws_path]
            assert job is not None
            line = progress.workspace_line(job, current)
            if line != last:
                note(f"[{time.monotonic() - began:5.1f}s] {line}")
                last = line
            verdict = progress.workspace_verdict(goal, job, current, accepted_version=workspace.get("version"))
            if verdict.failure:
                raise errors.Failed(verdict.failure)
            if verdict.done:
                return job, current


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
    paths = {f"/v1/jobs/{j['id']}": j["id"] for j in jobs}
    with watch.Watch(api, paths, note) as changes:
        while len(final) < len(shown):
            got = changes.next(deadline - time.monotonic())
            if got is None:
                waiting = ", ".join(f"job {output.short(j)} is {status[j]}" for j in shown if j not in final)
                raise errors.Failed(f"timed out after {timeout:g} s waiting for the job to end; {waiting}")
            path, job = got
            job_id = paths[path]
            if job is None:
                raise errors.Failed(f"job {output.short(job_id)} was deleted while following it")
            if job_id in final:
                continue
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
    return [final[j["id"]] for j in jobs]
