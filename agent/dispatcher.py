"""From a verified command to exactly one job result.

:meth:`Dispatcher.submit` runs the checks of :mod:`agent.domain.verification`
on the raw Kafka value. A rejected command is logged and counted, never
executed (if its signature was valid but the payload is not, the control
plane also gets a failed ``job.result`` naming the field). An accepted one
gets ``job.progress`` phase ``accepted`` at once, the control plane's
acknowledgement, and a task that runs the handler and ends in one
``job.result``:

* ok, with the handler's result dict;
* error, with the real error text (``JobFailed``, Docker's message);
* ``interrupted=True`` when shutdown cut it short.

Commands for the same workspace run one after another in arrival order
(create then delete must not overtake each other); cleanups run one at a
time; builds wait for a build slot; everything else runs concurrently.

While Docker is unreachable a handler waits for it and then runs again
from the top, which is safe because every handler is idempotent. A command
id is recorded as executed only after its result was acknowledged by Kafka,
so a crash before that means redelivery and an idempotent re-run, never a
lost job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import typing

from agent import builds as builds_mod
from agent import cleanup as cleanup_mod
from agent import context as context_mod
from agent import docker_client, jobs, metrics, store
from agent import workspaces as workspaces_mod
from agent.domain import verification
from shared import clock, failpoints, logs, messages

log = logging.getLogger(__name__)

K = messages.CommandKind


class _SeenOrRunning(typing.Container[str]):
    def __init__(self, seen: store.SeenCommands, running: typing.Container[str]) -> None:
        self.seen, self.running = seen, running

    def __contains__(self, command_id: object) -> bool:
        return command_id in self.seen or command_id in self.running


class Dispatcher:
    def __init__(
        self,
        ctx: context_mod.Context,
        *,
        seen: store.SeenCommands,
        workspaces: workspaces_mod.Workspaces,
        builder: builds_mod.Builder,
        cleaner: cleanup_mod.Cleaner,
    ) -> None:
        self.ctx = ctx
        self.seen = seen
        self.workspaces = workspaces
        self.builder = builder
        self.cleaner = cleaner
        self._running: dict[str, asyncio.Task] = {}
        self._job_of: dict[str, str] = {}  # command id -> job id, while running
        self._tails: dict[str, asyncio.Task] = {}
        self._cancelled: dict[str, str] = {}  # command id -> why, for commands a job.cancel stopped

    # -- intake -----------------------------------------------------------------

    def submit(self, raw: bytes) -> asyncio.Task | None:
        """Verify one command; returns the task that runs it, or None if rejected."""
        settings = self.ctx.settings.agent
        verdict = verification.check(
            raw,
            key=self.ctx.identity.key,
            host_id=self.ctx.host_id,
            now=clock.time(),
            replay_window=settings.replay_window,
            max_skew=settings.max_clock_skew,
            seen=_SeenOrRunning(self.seen, self._running),
        )
        if isinstance(verdict, verification.Rejected):
            self._rejected(verdict)
            return None
        if verdict.kind is K.JOB_CANCEL:
            with logs.scope(request_id=verdict.envelope.request_id):  # the cancelling request's id
                self._cancel(verdict)
            return None
        # Every line the command's task logs, and every event it emits, carries
        # its job, workspace and request ids (shared/logs.py: the task copies the scope).
        with logs.scope(job_id=verdict.job_id, workspace_id=_workspace_of(verdict), request_id=verdict.envelope.request_id):
            log.info("command accepted", extra={"kind": verdict.kind.value, "command_id": verdict.envelope.id})
            jobs.progress(self.ctx.publisher, verdict.job_id, "accepted", verdict.kind.value)
            key = _serial_key(verdict)
            before = self._tails.get(key) if key else None
            task = asyncio.create_task(self._run(verdict, before), name=f"a4c:command:{verdict.envelope.id}")
        self._running[verdict.envelope.id] = task
        self._job_of[verdict.envelope.id] = verdict.job_id
        metrics.IN_FLIGHT.set(len(self._running))
        if key:
            self._tails[key] = task
        task.add_done_callback(functools.partial(self._forget, verdict.envelope.id, key))
        return task

    def _cancel(self, verdict: verification.Accepted) -> None:
        """Stop the command of the cancelled job, if it runs (or waits) here; its result then says cancelled."""
        target, reason = verdict.payload.job_id, verdict.payload.reason or "cancelled"
        self.seen.add(verdict.envelope.id, verdict.envelope.issued_at)
        found = [cid for cid, job_id in self._job_of.items() if job_id == target]
        for command_id in found:
            self._cancelled[command_id] = reason
            self._running[command_id].cancel()
        log.info("job cancelled" if found else "job to cancel is not running here", extra={"job_id": target, "reason": reason})

    def _rejected(self, verdict: verification.Rejected) -> None:
        metrics.REJECTED.labels(verdict.reason).inc()
        level = logging.INFO if verdict.reason == verification.REPLAYED and verdict.command_id in self._running else logging.WARNING
        log.log(
            level,
            "command rejected",
            extra={"reason": verdict.reason, "detail": verdict.detail, "command_id": verdict.command_id, "job_id": verdict.job_id},
        )
        if verdict.job_id is not None:
            self.ctx.publisher.emit(
                messages.EventKind.JOB_RESULT,
                messages.JobResult(job_id=verdict.job_id, ok=False, error=f"invalid command: {verdict.detail}"),
            )

    def _forget(self, command_id: str, key: str | None, task: asyncio.Task) -> None:
        self._running.pop(command_id, None)
        self._job_of.pop(command_id, None)
        if key and self._tails.get(key) is task:
            del self._tails[key]
        metrics.IN_FLIGHT.set(len(self._running))

    def in_flight(self) -> int:
        return len(self._running)

    def held_jobs(self) -> list[str]:
        """The jobs this agent holds: accepted, and not yet past their result (what heartbeats report).

        A job joins in :meth:`submit` right after its ``accepted`` progress is
        emitted and leaves only after its result was (durably) emitted, so any
        heartbeat emitted after the one and before the other lists it.
        """
        return sorted(set(self._job_of.values()))

    # -- running one ----------------------------------------------------------------

    async def _run(self, cmd: verification.Accepted, before: asyncio.Task | None) -> None:
        job_id = cmd.job_id
        began = time.monotonic()
        result: messages.JobResult
        try:
            if before is not None:
                # Order within a workspace; the earlier command's outcome is its own business.
                await asyncio.wait({before})
            outcome = await self._until_docker_answers(cmd, job_id)
            result = messages.JobResult(job_id=job_id, ok=True, result=outcome)
        except asyncio.CancelledError:
            why = self._cancelled.pop(cmd.envelope.id, None)
            if why is None:
                await self._interrupted(cmd, job_id)
                raise
            # Stopped on purpose (a build's stream is closed, so Docker stops it too): done, not interrupted.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            result = messages.JobResult(job_id=job_id, ok=False, error=f"cancelled: {why}")
        except jobs.JobFailed as exc:
            result = messages.JobResult(job_id=job_id, ok=False, error=str(exc))
        except docker_client.DockerError as exc:
            result = messages.JobResult(job_id=job_id, ok=False, error=f"docker: {exc}")
        except Exception as exc:
            log.exception("command handler crashed", extra={"job_id": job_id, "kind": cmd.kind.value})
            result = messages.JobResult(job_id=job_id, ok=False, error=f"internal error in the agent: {exc.__class__.__name__}: {exc}")
        metrics.COMMANDS.labels(cmd.kind.value, "ok" if result.ok else "error").inc()
        metrics.COMMAND_SECONDS.labels(cmd.kind.value).observe(time.monotonic() - began)
        log.info(
            "command done",
            extra={"job_id": job_id, "kind": cmd.kind.value, "ok": result.ok, "error": result.error, "seconds": round(time.monotonic() - began, 3)},
        )
        failpoints.hit("agent.before_result")  # a fault test loses the result (raise): the work is done, nobody hears of it
        # Durable before the command counts as executed (and its offset is committed).
        await self.ctx.publisher.emit(messages.EventKind.JOB_RESULT, result)
        self.seen.add(cmd.envelope.id, cmd.envelope.issued_at)

    async def _until_docker_answers(self, cmd: verification.Accepted, job_id: str) -> dict[str, typing.Any]:
        waited = False
        while True:
            try:
                return await self._handle(cmd, job_id)
            except docker_client.DockerUnavailable as exc:
                self.ctx.health.docker(False, str(exc))
                if not waited:
                    jobs.progress(self.ctx.publisher, job_id, "waiting", "Docker is unreachable; will retry when it is back")
                    waited = True
                await self.ctx.health.docker_up.wait()

    async def _handle(self, cmd: verification.Accepted, job_id: str) -> dict[str, typing.Any]:
        p = cmd.payload
        if cmd.kind is K.WORKSPACE_CREATE:
            return await self.workspaces.create(p, job_id)
        if cmd.kind is K.WORKSPACE_START:
            return await self.workspaces.start(p, job_id)
        if cmd.kind is K.WORKSPACE_STOP:
            return await self.workspaces.stop(p, job_id)
        if cmd.kind is K.WORKSPACE_DELETE:
            return await self.workspaces.delete(p, job_id)
        if cmd.kind is K.IMAGE_BUILD:
            return await self.builder.build(p, job_id)
        if cmd.kind is K.HOST_CLEANUP:
            report = await self.cleaner.run("command", dry_run=p.dry_run, job_id=job_id)
            return report.model_dump(mode="json")
        raise jobs.JobFailed(f"kind: this agent cannot handle {cmd.kind.value!r}")

    async def _interrupted(self, cmd: verification.Accepted, job_id: str) -> None:
        metrics.COMMANDS.labels(cmd.kind.value, "interrupted").inc()
        log.warning("command interrupted by shutdown", extra={"job_id": job_id, "kind": cmd.kind.value})
        result = messages.JobResult(job_id=job_id, ok=False, interrupted=True, error="the agent shut down before the command finished")
        try:
            await asyncio.wait_for(self.ctx.publisher.emit(messages.EventKind.JOB_RESULT, result), 2.0)
            # Reported: the control plane re-issues it, so this id is done here.
            self.seen.add(cmd.envelope.id, cmd.envelope.issued_at)
        except (TimeoutError, Exception):  # noqa: BLE001 - shutting down; redelivery covers it
            log.warning("could not report an interrupted command; it will be redelivered", extra={"job_id": job_id})

    # -- shutdown -------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Let in-flight commands finish for ``timeout`` seconds, then interrupt the rest."""
        tasks = set(self._running.values())
        if not tasks:
            return
        log.info("waiting for in-flight commands", extra={"count": len(tasks), "timeout_s": round(timeout, 1)})
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=3.0)


def _workspace_of(cmd: verification.Accepted) -> str | None:
    payload = cmd.payload
    if isinstance(payload, messages.WorkspaceCommand):
        return payload.spec.workspace_id
    return getattr(payload, "workspace_id", None)


def _serial_key(cmd: verification.Accepted) -> str | None:
    payload = cmd.payload
    if isinstance(payload, messages.WorkspaceCommand):
        return "ws:" + payload.spec.workspace_id
    if isinstance(payload, messages.WorkspaceRef):
        return "ws:" + payload.workspace_id
    if isinstance(payload, messages.CleanupCommand):
        return "cleanup"
    return None
