"""The cleanup daemon: gather facts, plan (pure), remove, report.

Runs are triggered three ways, one at a time (a lock): every
``cleanup.interval`` seconds (:meth:`Cleaner.run_scheduler`, a root task),
disk pressure (the disk reporter calls :meth:`Cleaner.pressure` when the
fullest path is at or above the high watermark; at most one such run per
``cleanup.pressure_cooldown``), and the
``host.cleanup`` command. What to remove is decided by
:func:`agent.domain.cleanup.plan`; Docker is asked without ``force`` for
every removal, so even a race with a new container cannot remove a running
container or an image in use (Docker refuses, the run notes it and goes on).

Every run ends with a disk report carrying a
:class:`shared.messages.CleanupReport`; a commanded run's job result carries
the same report. In dry-run mode nothing is removed and the report lists
what would have been.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing

import psutil

from agent import context as context_mod
from agent import docker_client, metrics
from agent.domain import cleanup as plan_mod
from agent.domain import containers as spec_mod
from agent.domain import inventory as inv
from shared import aio, messages

log = logging.getLogger(__name__)

Trigger = typing.Literal["schedule", "pressure", "command"]


class Cleaner:
    def __init__(self, ctx: context_mod.Context, *, on_report: typing.Callable[[messages.CleanupReport], typing.Awaitable[None]]) -> None:
        self.ctx = ctx
        self.on_report = on_report
        self._lock = asyncio.Lock()
        self._last_pressure_run = float("-inf")
        self._rescheduled = asyncio.Event()

    # -- triggers -----------------------------------------------------------------

    async def run_scheduler(self, stopping: asyncio.Event) -> None:
        """Root task: a run every ``cleanup.interval`` seconds (none while disabled) until ``stopping``.

        The first run is one interval after the start or the last :meth:`reschedule`;
        runs keep their rate, and slots that pass during a long run are skipped.
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + self.ctx.settings.cleanup.interval
        while not stopping.is_set():
            settings = self.ctx.settings.cleanup
            if settings.enabled:
                await aio.wait_any(max(0.0, due - loop.time()), stopping, self._rescheduled)
            else:
                await aio.wait_any(3600.0, stopping, self._rescheduled)
            if stopping.is_set():
                return
            if self._rescheduled.is_set():
                self._rescheduled.clear()
                due = loop.time() + self.ctx.settings.cleanup.interval
                continue
            if not settings.enabled:
                continue
            await self._scheduled()
            due += settings.interval
            now = loop.time()
            if due <= now:  # slots that passed during the run are skipped
                due += ((now - due) // settings.interval + 1) * settings.interval

    def reschedule(self) -> None:
        """(Re)apply cleanup.enabled and cleanup.interval, e.g. after a SIGHUP."""
        self._rescheduled.set()

    async def _scheduled(self) -> None:
        try:
            await self.run("schedule")
        except docker_client.DockerUnavailable as exc:
            log.warning("scheduled cleanup skipped: Docker unreachable", extra={"error": str(exc)})
        except Exception:
            log.exception("scheduled cleanup failed")

    async def pressure(self) -> None:
        """Disk use crossed the high watermark: clean now unless one ran recently or is running."""
        settings = self.ctx.settings.cleanup
        if not settings.enabled or self._lock.locked():
            return
        if time.monotonic() - self._last_pressure_run < settings.pressure_cooldown:
            return
        self._last_pressure_run = time.monotonic()
        await self.run("pressure")

    # -- one run --------------------------------------------------------------------

    async def run(self, trigger: Trigger, *, dry_run: bool | None = None, job_id: str | None = None) -> messages.CleanupReport:
        settings = self.ctx.settings.cleanup
        dry = settings.dry_run if dry_run is None else (dry_run or settings.dry_run)
        async with self._lock:
            plan = await self._plan()
            report = messages.CleanupReport(
                job_id=job_id,
                trigger=trigger,
                dry_run=dry,
                percent_before=plan.percent_before,
                projected_percent=plan.projected_percent,
            )
            if dry:
                report.removed_containers = [a.target for a in plan.of_kind(plan_mod.REMOVE_CONTAINER)]
                report.removed_images = [a.target for a in plan.of_kind(plan_mod.REMOVE_IMAGE)]
                report.pruned_dangling_images = sum(1 for _ in plan.of_kind(plan_mod.PRUNE_DANGLING))
                report.pruned_build_cache = bool(plan.of_kind(plan_mod.PRUNE_BUILD_CACHE))
            else:
                await self._execute(plan, report)
            disk = await _measure(self._paths())
            report.percent_after = round(disk.percent, 2) if disk else None
        log.info(
            "cleanup finished",
            extra={
                "trigger": trigger,
                "dry_run": dry,
                "containers": len(report.removed_containers),
                "images": len(report.removed_images),
                "reclaimed_bytes": report.reclaimed_bytes,
                "percent_before": report.percent_before,
                "projected_percent": report.projected_percent,
                "errors": report.errors,
            },
        )
        await self.on_report(report)
        return report

    async def _plan(self) -> plan_mod.Plan:
        docker = self.ctx.docker
        df = await docker.df()
        now = time.time()
        containers = []
        for row in df.get("Containers") or []:
            labels = row.get("Labels") or {}
            finished = None
            if spec_mod.is_owned(labels, self.ctx.host_id) and row.get("State") in ("exited", "dead", "created"):
                try:
                    finished = inv.parse_time((await docker.inspect_container(row["Id"]))["State"].get("FinishedAt"))
                except docker_client.NotFound:
                    continue
            containers.append(
                plan_mod.ContainerFact(
                    id=row["Id"],
                    name=spec_mod.name_of(row),
                    state=row.get("State") or "",
                    image_id=row.get("ImageID") or "",
                    labels=labels,
                    created_at=float(row.get("Created") or 0),
                    finished_at=finished,
                    size_rw=int(row.get("SizeRw") or 0),
                )
            )
        last_use: dict[str, float] = {}
        for c in containers:
            last_use[c.image_id] = max(last_use.get(c.image_id, 0.0), c.created_at)
        images = []
        for row in df.get("Images") or []:
            labels = row.get("Labels") or {}
            used = max(float(row.get("Created") or 0), last_use.get(row["Id"], 0.0), self.ctx.marks.image_last_used.get(row["Id"], 0.0))
            if spec_mod.is_owned(labels, self.ctx.host_id):
                # Sub-second order matters for LRU; df only has whole seconds.
                try:
                    detail = await docker.inspect_image(row["Id"])
                except docker_client.NotFound:
                    continue
                used = max(
                    used,
                    inv.parse_time(detail.get("Created")) or 0.0,
                    inv.parse_time((detail.get("Metadata") or {}).get("LastTagTime")) or 0.0,
                )
            shared = row.get("SharedSize")
            unique = int(row.get("Size") or 0) - (int(shared) if isinstance(shared, int) and shared > 0 else 0)
            images.append(
                plan_mod.ImageFact(
                    id=row["Id"],
                    tags=tuple(row.get("RepoTags") or ()),
                    labels=labels,
                    unique_size=max(0, unique),
                    last_used=used,
                )
            )
        self.ctx.marks.forget_images(i.id for i in images)
        settings = self.ctx.settings.cleanup
        policy = plan_mod.Policy(
            host_id=self.ctx.host_id,
            high_watermark=settings.high_watermark,
            low_watermark=settings.low_watermark,
            exited_grace=settings.exited_grace,
            retained_workspaces=frozenset(self.ctx.marks.stopped),
        )
        return plan_mod.plan(containers, images, await _measure(self._paths()), policy, now=now, build_cache_bytes=inv.unused_build_cache(df))

    async def _execute(self, plan: plan_mod.Plan, report: messages.CleanupReport) -> None:
        docker = self.ctx.docker
        for action in plan.actions:
            try:
                if action.kind == plan_mod.REMOVE_CONTAINER:
                    # Not forced: Docker refuses to remove a container that started meanwhile.
                    await docker.remove_container(action.target, force=False)
                    report.removed_containers.append(action.target)
                    report.reclaimed_bytes += action.bytes
                    metrics.CLEANUP_REMOVED.labels("container").inc()
                elif action.kind == plan_mod.PRUNE_DANGLING:
                    answer = await docker.prune_dangling_images()
                    deleted = [d for d in answer.get("ImagesDeleted") or [] if d.get("Deleted")]
                    report.pruned_dangling_images = len(deleted)
                    report.reclaimed_bytes += int(answer.get("SpaceReclaimed") or 0)
                    metrics.CLEANUP_REMOVED.labels("dangling-image").inc(len(deleted))
                elif action.kind == plan_mod.PRUNE_BUILD_CACHE:
                    answer = await docker.prune_build_cache()
                    report.pruned_build_cache = True
                    report.reclaimed_bytes += int(answer.get("SpaceReclaimed") or 0)
                elif action.kind == plan_mod.REMOVE_IMAGE:
                    await self._remove_image(action)
                    report.removed_images.append(action.target)
                    report.reclaimed_bytes += action.bytes
                    metrics.CLEANUP_REMOVED.labels("image").inc()
            except docker_client.NotFound:
                continue  # gone already: the goal is reached
            except docker_client.DockerUnavailable:
                raise
            except docker_client.DockerError as exc:
                report.errors.append(f"{action.kind} {action.target[:19]}: {exc}")
        metrics.CLEANUP_RECLAIMED.inc(report.reclaimed_bytes)

    async def _remove_image(self, action: plan_mod.Action) -> None:
        # Untag one name at a time (never forced): the last untag deletes the
        # image, and Docker refuses if any container uses it.
        tags = [t for t in action.tags if t != "<none>:<none>"]
        for tag in tags[:-1]:
            await self.ctx.docker.remove_image(tag)
        await self.ctx.docker.remove_image(tags[-1] if tags else action.target)

    def _paths(self) -> list[str]:
        return self.ctx.settings.reporting.disk_paths or [self.ctx.settings.docker.data_root]


async def _measure(paths: typing.Sequence[str]) -> plan_mod.Disk | None:
    return plan_mod.fullest(await asyncio.to_thread(measure_paths, paths))


def measure_paths(paths: typing.Sequence[str]) -> list[plan_mod.Disk]:
    out = []
    for path in paths:
        try:
            usage = psutil.disk_usage(path)
        except OSError:
            log.debug("cannot measure a disk path", extra={"path": path})
            continue
        out.append(plan_mod.Disk(path=path, total=usage.total, used=usage.used, free=usage.free))
    return out
