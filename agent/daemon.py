"""The agent process: wiring, root tasks, signals, ordered shutdown.

Root tasks, under :class:`shared.supervisor.Supervisor` (a crash is logged
and the task restarted with backoff; never lost silently)::

    metrics-server     /metrics and /healthz on loopback
    access-server      exec and logs streams for the control plane (agent/access.py)
    publisher          events -> Kafka (signed, at least once)
    docker-monitor     pings Docker; commands wait while it is down
    heartbeat          health, capacity, conditions
    inventory          a4c containers and images, at start and every reconcile period
    disk               psutil + Docker disk figures; triggers cleanup under pressure
    cleanup-scheduler  a cleanup every cleanup.interval seconds
    docker-events      workspace changes nobody commanded
    command-consumer   this host's commands <- Kafka, manual commits
    watchdog           sd_notify WATCHDOG=1 (only under systemd with WatchdogSec)

SIGTERM/SIGINT shut down within ``daemon.shutdown_deadline``: the supervisor
stops root tasks in reverse order, so the consumer goes first (it takes no
new command, lets in-flight ones finish, interrupts and reports the rest,
commits), then the reporters, then the publisher (a last flush), and the
metrics endpoint last. SIGHUP reloads the config file; what cannot change
live is logged as needing a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import typing

from agent import __version__, docker_client, docker_events, logs, metrics, reports, store
from agent import access as access_mod
from agent import builds as builds_mod
from agent import cleanup as cleanup_mod
from agent import consumer as consumer_mod
from agent import context as context_mod
from agent import dispatcher as dispatcher_mod
from agent import health as health_mod
from agent import identity as identity_mod
from agent import publisher as publisher_mod
from agent import settings as agent_settings
from agent import workspaces as workspaces_mod
from agent.domain import disk_limits as disk_limits_rule
from shared import config, sdnotify
from shared import supervisor as supervisor_mod
from shared import topics as topics_mod

log = logging.getLogger(__name__)

# Settings read once at start: a reload that changes them is logged as needing a restart.
_RESTART_KEYS = (
    "agent.state_dir",
    "agent.control_plane_url",
    "kafka",
    "docker.base_url",
    "daemon.metrics_host",
    "daemon.metrics_port",
    "access",
    "commands",
)


class Agent:
    def __init__(self, settings: agent_settings.Settings, config_path: str | None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.stopping = asyncio.Event()
        self.ctx: context_mod.Context | None = None
        self.supervisor: supervisor_mod.Supervisor | None = None
        self.metrics_port: int | None = None
        self._parts: tuple[reports.Reporter, cleanup_mod.Cleaner, builds_mod.Builder] | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        settings = self.settings
        os.makedirs(settings.agent.state_dir, mode=0o700, exist_ok=True)
        identity = await self._identity()
        if identity is None:
            return 0

        health = health_mod.Health()
        docker = docker_client.Docker(settings.docker.base_url, timeout=settings.docker.api_timeout)
        client_id = f"a4c-agent-{identity.host_id}"
        publisher = publisher_mod.Publisher(
            settings.kafka,
            topics_mod.Topics(settings.kafka.topic_prefix).events,
            identity,
            health,
            client_id=client_id,
            versions=store.EventVersions(settings.agent.state_dir),
        )
        ctx = self.ctx = context_mod.Context(
            settings=settings,
            identity=identity,
            docker=docker,
            publisher=publisher,
            health=health,
            marks=store.WorkspaceMarks(settings.agent.state_dir),
        )
        reporter = reports.Reporter(ctx)
        cleaner = cleanup_mod.Cleaner(ctx, on_report=lambda report: _report_cleanup(reporter, report))
        reporter.cleaner = cleaner
        builder = builds_mod.Builder(ctx)
        seen = store.SeenCommands(settings.agent.state_dir, replay_window=settings.agent.replay_window, max_entries=settings.agent.seen_commands_max)
        dispatcher = dispatcher_mod.Dispatcher(ctx, seen=seen, workspaces=workspaces_mod.Workspaces(ctx), builder=builder, cleaner=cleaner)
        reporter.held_jobs = dispatcher.held_jobs
        consumer = consumer_mod.CommandConsumer(ctx, dispatcher, client_id=client_id)
        watcher = docker_events.Watcher(ctx, on_gap=reporter.inventory_soon)
        self._parts = (reporter, cleaner, builder)
        # Know Docker's state before the first heartbeat reports it.
        await reporter.check_docker()
        refused = disk_limits_rule.refusal(settings.docker.enforce_disk_limit, ctx.disk_limits_able) if ctx.disk_limits_able else None
        if refused is not None:
            log.error("refusing to start: %s", refused)
            docker.close()
            return 2

        # Shutdown runs in reverse order of adding.
        sup = self.supervisor = supervisor_mod.Supervisor(max_backoff=settings.daemon.task_restart_backoff_max)
        sup.add("metrics-server", self._metrics_server)
        if settings.access.enabled:
            sup.add("access-server", lambda stopping: self._access_server(ctx, reporter, stopping))
        sup.add("publisher", publisher.run)
        sup.add("docker-monitor", _until_stopped(reporter.docker_monitor))
        sup.add("heartbeat", _until_stopped(reporter.heartbeats))
        sup.add("inventory", _until_stopped(reporter.inventories))
        sup.add("disk", _until_stopped(reporter.disk_reports))
        sup.add("cleanup-scheduler", cleaner.run_scheduler)
        sup.add("docker-events", _until_stopped(watcher.run))
        sup.add("command-consumer", consumer.run)
        watchdog = sdnotify.watchdog_period()
        if watchdog is not None:
            sup.add("watchdog", _until_stopped(lambda: self._watchdog(watchdog)))
        sup.start()
        log.info(
            "agent started",
            extra={"host_id": identity.host_id, "version": __version__, "commands_topic": consumer.topic, "tasks": list(sup.health())},
        )
        sdnotify.notify("READY=1", f"STATUS=serving host {identity.host_id}")

        await self.stopping.wait()
        began = time.monotonic()
        deadline = ctx.settings.daemon.shutdown_deadline
        sdnotify.notify("STOPPING=1")
        log.info("shutting down", extra={"in_flight": dispatcher.in_flight(), "deadline_s": deadline})
        cancelled = await sup.shutdown(deadline)
        docker.close()
        log.info("agent stopped", extra={"seconds": round(time.monotonic() - began, 2), "cancelled_tasks": cancelled})
        return 0

    async def _identity(self) -> identity_mod.Identity | None:
        settings = self.settings
        cpus, memory_mb = reports.machine_capacity()
        disks = cleanup_mod.measure_paths(settings.reporting.disk_paths or [settings.docker.data_root])
        try:
            return await identity_mod.load_or_enrol(
                settings,
                capacity=identity_mod.Capacity(cpus=cpus, memory_mb=memory_mb, disk_bytes=disks[0].total if disks else 0),
                agent_version=__version__,
                host_name=settings.agent.host_name or socket.gethostname(),
                stop=self.stopping,
            )
        except identity_mod.EnrolmentError:
            if self.stopping.is_set():
                return None  # told to stop while waiting for the control plane
            raise

    # -- SIGHUP --------------------------------------------------------------------------

    def reload(self) -> None:
        if self.ctx is None or self._parts is None:
            log.warning("SIGHUP before the agent finished starting; ignored")
            return
        sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = agent_settings.load(self.config_path)
        except config.ConfigError as exc:
            log.error("config reload failed; keeping the running config", extra={"error": str(exc)})
            sdnotify.notify("READY=1")
            return
        old = self.ctx.settings
        changed = [key for key in _RESTART_KEYS if _get(old, key) != _get(new, key)]
        self.ctx.settings = new
        logs.setup(new)
        reporter, cleaner, builder = self._parts
        cleaner.reschedule()
        builder.reconfigure()
        reporter.heartbeat_soon()
        log.info("config reloaded", extra={"needs_restart": changed})
        sdnotify.notify("READY=1")

    # -- small root tasks ----------------------------------------------------------------

    async def _metrics_server(self, stopping: asyncio.Event) -> None:
        settings = self.settings.daemon
        server = metrics.Server(settings.metrics_host, settings.metrics_port, self._health)
        server.start()
        self.metrics_port = server.port
        try:
            await stopping.wait()
        finally:
            await asyncio.to_thread(server.stop)

    async def _access_server(self, ctx: context_mod.Context, reporter: reports.Reporter, stopping: asyncio.Event) -> None:
        server = access_mod.Server(ctx)
        ctx.access_url = await server.start()
        reporter.heartbeat_soon()  # the control plane learns the URL at once
        try:
            await stopping.wait()
        finally:
            ctx.access_url = None
            await server.stop()

    def _health(self) -> dict[str, object]:
        if self.ctx is None or self.supervisor is None:
            return {"status": "starting"}
        self.ctx.health.tasks_ok = self.supervisor.healthy
        return dict(self.ctx.health.snapshot(), tasks=self.supervisor.health())

    async def _watchdog(self, period: float) -> None:
        while True:
            # Only while every root task runs: a wedged agent gets restarted by systemd.
            if self.supervisor is not None and self.supervisor.healthy:
                sdnotify.notify("WATCHDOG=1", wait=0)
            await asyncio.sleep(period)


def _until_stopped(loop: typing.Callable[[], typing.Awaitable[None]]) -> typing.Callable[[asyncio.Event], typing.Awaitable[None]]:
    """Adapt a loop that runs until cancelled to the supervisor's stop-event protocol."""

    async def run(stopping: asyncio.Event) -> None:
        task = asyncio.ensure_future(loop())
        stopper = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, stopper, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    return run


async def _report_cleanup(reporter: reports.Reporter, report: typing.Any) -> None:
    if report.removed_images and not report.dry_run:
        # The control plane learns which images this host holds from the inventory: send one now.
        reporter.inventory_soon()
    try:
        await reporter.send_disk_report(cleanup=report)
    except docker_client.DockerError as exc:
        log.warning("disk report after cleanup failed", extra={"error": str(exc)})


def _get(settings: agent_settings.Settings, dotted: str) -> typing.Any:
    node: typing.Any = settings
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def run(config_path: str | None) -> int:
    """Load settings and run until stopped. Config/identity problems raise for the CLI to print."""
    settings = agent_settings.load(config_path)
    logs.setup(settings)
    return asyncio.run(Agent(settings, config_path).run())
