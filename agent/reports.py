"""The periodic reports (heartbeat, inventory, disk) and the Docker health monitor.

Each is a root task looping on its interval, read from the current settings
at every turn (so a SIGHUP changes it from the next turn). The inventory is
also sent at once when asked (:meth:`Reporter.inventory_soon`): at start,
when Docker or Kafka comes back, and when the Docker event stream
reconnected and may have missed something — reconciliation is
level-triggered, so a fresh full picture heals whatever was lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import typing

import psutil

from agent import __version__, disk_limits, docker_client, metrics
from agent import cleanup as cleanup_mod
from agent import context as context_mod
from agent.domain import containers as spec_mod
from agent.domain import inventory as inv
from shared import messages
from shared.domain import backoff

log = logging.getLogger(__name__)


def machine_capacity() -> tuple[float, int]:
    return float(os.cpu_count() or 1), int(psutil.virtual_memory().total // (1024 * 1024))


def disk_limits_message(decision: disk_limits.rule.Decision | None) -> messages.DiskLimits | None:
    return messages.DiskLimits(enforced=decision.enforced, reason=decision.reason[:500]) if decision is not None else None


class Reporter:
    def __init__(self, ctx: context_mod.Context, cleaner: cleanup_mod.Cleaner | None = None) -> None:
        self.ctx = ctx
        self.cleaner = cleaner
        self._inventory_now = asyncio.Event()
        self._heartbeat_now = asyncio.Event()
        self._cpus, self._memory_mb = machine_capacity()
        # The event loop keeps only weak references to tasks: hold the running cleanup.
        self._cleanups: set[asyncio.Task[None]] = set()
        # The dispatcher's held jobs (agent/dispatcher.py), set once both exist.
        self.held_jobs: typing.Callable[[], list[str]] | None = None

    def inventory_soon(self) -> None:
        self._inventory_now.set()

    def heartbeat_soon(self) -> None:
        self._heartbeat_now.set()

    # -- heartbeat ------------------------------------------------------------------

    async def heartbeats(self) -> None:
        while True:
            self.send_heartbeat()
            await _wait(self._heartbeat_now, self.ctx.settings.reporting.heartbeat_interval)

    def send_heartbeat(self) -> None:
        health = self.ctx.health
        recovered = health.take_recoveries()
        if recovered:
            # A dependency came back: the picture may be stale, resend it all.
            self.inventory_soon()
        self.ctx.publisher.emit(
            messages.EventKind.HEARTBEAT,
            messages.Heartbeat(
                agent_version=__version__,
                uptime_s=round(health.uptime(), 1),
                cpus=self._cpus,
                memory_mb=self._memory_mb,
                labels=dict(self.ctx.settings.agent.labels),
                docker_ok=health.docker_ok,
                conditions=health.conditions() + recovered,
                jobs=self.held_jobs() if self.held_jobs is not None else None,
                access_url=self.ctx.access_url,
                features=list(messages.FEATURES),
            ),
        )

    # -- inventory --------------------------------------------------------------------

    async def inventories(self) -> None:
        while True:
            await self.ctx.health.docker_up.wait()
            try:
                await self.send_inventory()
            except docker_client.DockerUnavailable as exc:
                self.ctx.health.docker(False, str(exc))
                continue
            await _wait(self._inventory_now, self.ctx.settings.reporting.inventory_interval)

    async def send_inventory(self) -> messages.Inventory:
        labels = spec_mod.owned_filters(self.ctx.host_id)
        rows, images = await asyncio.gather(self.ctx.docker.containers(labels=labels), self.ctx.docker.images(labels=labels))
        report = inv.inventory(rows, images, self.ctx.host_id)
        self.ctx.publisher.emit(messages.EventKind.INVENTORY, report)
        return report

    # -- disk ---------------------------------------------------------------------------

    async def disk_reports(self) -> None:
        while True:
            try:
                await self.send_disk_report()
            except docker_client.DockerUnavailable as exc:
                self.ctx.health.docker(False, str(exc))
            await asyncio.sleep(self.ctx.settings.reporting.disk_interval)

    async def send_disk_report(self, cleanup: messages.CleanupReport | None = None) -> messages.DiskReport:
        settings = self.ctx.settings
        measured = await asyncio.to_thread(cleanup_mod.measure_paths, settings.reporting.disk_paths or [settings.docker.data_root])
        paths = [
            messages.PathUsage(path=d.path, total_bytes=d.total, used_bytes=d.used, free_bytes=d.free or 0, percent=round(d.percent, 2))
            for d in measured
        ]
        for p in paths:
            metrics.DISK_PERCENT.labels(p.path).set(p.percent)
        docker_figures: dict[str, int] = {}
        sizes: dict[str, int] = {}
        if self.ctx.health.docker_ok:
            try:
                df = await self.ctx.docker.df()
                docker_figures, sizes = inv.docker_figures(df), inv.workspace_sizes(df, self.ctx.host_id)
            except docker_client.DockerUnavailable:
                raise
            except docker_client.DockerError as exc:
                log.warning("docker disk usage unavailable", extra={"error": str(exc)})
        report = messages.DiskReport(
            paths=paths,
            docker=docker_figures,
            workspaces=sizes,
            cleanup=cleanup,
            high_watermark=settings.cleanup.high_watermark,
            disk_limits=disk_limits_message(self.ctx.disk_limits),
        )
        self.ctx.publisher.emit(messages.EventKind.DISK, report)
        fullest = max((p.percent for p in paths), default=0.0)
        pressure = fullest >= settings.cleanup.high_watermark
        if pressure != self.ctx.health.disk_pressure:
            log.warning("disk pressure" if pressure else "disk pressure over", extra={"percent": fullest})
        self.ctx.health.disk_pressure = pressure
        if pressure and cleanup is None and self.cleaner is not None:
            # Not awaited here: a long cleanup must not delay the next report.
            task = asyncio.create_task(self._pressure_cleanup(), name="a4c:pressure-cleanup")
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)
        return report

    async def _pressure_cleanup(self) -> None:
        try:
            assert self.cleaner is not None
            await self.cleaner.pressure()
        except docker_client.DockerUnavailable as exc:
            self.ctx.health.docker(False, str(exc))
        except Exception:
            log.exception("disk-pressure cleanup failed")

    # -- Docker health ------------------------------------------------------------------

    async def docker_monitor(self) -> None:
        """Ping Docker; while it is down, ping with backoff (commands wait meanwhile)."""
        delays = backoff.exponential(0.5, self.ctx.settings.daemon.docker_check_interval)
        while True:
            if await self.check_docker():
                delays.reset()
                await asyncio.sleep(self.ctx.settings.daemon.docker_check_interval)
            else:
                await asyncio.sleep(delays.next())

    async def check_docker(self) -> bool:
        try:
            # A ping is tiny: a daemon that takes longer than this is not answering.
            await asyncio.wait_for(self.ctx.docker.ping(), min(5.0, self.ctx.settings.docker.api_timeout))
        except (TimeoutError, docker_client.DockerError) as exc:
            self.ctx.health.docker(False, str(exc) or exc.__class__.__name__)
            return False
        came_back = self.ctx.health.is_down("docker")
        if came_back or self.ctx.disk_limits is None:
            # Before Docker counts as up, so no create runs without the decision; a Docker that came back may be another one.
            try:
                await disk_limits.evaluate(self.ctx)
            except docker_client.DockerError as exc:
                log.warning("cannot tell whether disk limits can be enforced", extra={"error": str(exc)})
        self.ctx.health.docker(True)
        if came_back:
            self.heartbeat_soon()
            self.inventory_soon()
        return True


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Sleep for ``timeout`` or until ``event`` is set (and clear it)."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
    event.clear()
