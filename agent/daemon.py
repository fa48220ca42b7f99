"""The agent process: wiring, root tasks, signals, ordered shutdown.

Root tasks (each guarded by :class:`agent.supervisor.Supervisor`)::

    publisher          events -> Kafka (signed, at least once)
    docker-monitor     pings Docker; commands wait while it is down
    command-consumer   this host's commands <- Kafka, manual commits
    docker-events      workspace changes nobody commanded
    heartbeat          health, capacity, conditions
    inventory          a4c containers and images, at start and every reconcile period
    disk               psutil + Docker disk figures; triggers cleanup under pressure
    cleanup-scheduler  APScheduler interval cleanup
    metrics-server     /metrics and /healthz on loopback
    watchdog           sd_notify WATCHDOG=1 (only under systemd with WatchdogSec)

Signals: SIGTERM/SIGINT shut down in order within ``daemon.shutdown_deadline``
(stop taking commands; let in-flight ones finish, then interrupt and report
the rest; commit offsets; stop the reporters; flush events); SIGHUP reloads
the config file (what cannot change live is logged as needing a restart).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import typing

from agent import __version__
from agent import builds as builds_mod
from agent import cleanup as cleanup_mod
from agent import consumer as consumer_mod
from agent import context as context_mod
from agent import dispatcher as dispatcher_mod
from agent import docker_client
from agent import docker_events
from agent import health as health_mod
from agent import identity as identity_mod
from agent import logs
from agent import metrics
from agent import publisher as publisher_mod
from agent import reports
from agent import settings as agent_settings
from agent import store
from agent import supervisor as supervisor_mod
from agent import systemd
from agent import workspaces as workspaces_mod
from shared import config
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
    "commands",
)


class Agent:
    def __init__(self, settings: agent_settings.Settings, config_path: str | None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.stopping = asyncio.Event()
        self.ctx: context_mod.Context | None = None
        self.metrics_port: int | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        settings = self.settings
        os.makedirs(settings.agent.state_dir, mode=0o700, exist_ok=True)
        cpus, memory_mb = reports.machine_capacity()
        disks = cleanup_mod.measure_paths(settings.reporting.disk_paths or [settings.docker.data_root])
        try:
            identity = await identity_mod.load_or_enrol(
                settings,
                capacity=identity_mod.Capacity(cpus=cpus, memory_mb=memory_mb, disk_bytes=disks[0].total if disks else 0),
                agent_version=__version__,
                host_name=settings.agent.host_name or socket.gethostname(),
                stop=self.stopping,
            )
        except identity_mod.EnrolmentError:
            if self.stopping.is_set():
                return 0  # told to stop while waiting for the control plane
            raise
        health = health_mod.Health()
        docker = docker_client.Docker(settings.docker.base_url, timeout=settings.docker.api_timeout)
        publisher = publisher_mod.Publisher(
            settings.kafka, topics_mod.Topics(settings.kafka.topic_prefix).events, identity, health, client_id=f"a4c-agent-{identity.host_id}"
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
        dispatcher = dispatcher_mod.Dispatcher(
            ctx,
            seen=store.SeenCommands(
                settings.agent.state_dir, replay_window=settings.agent.replay_window, max_entries=settings.agent.seen_commands_max
            ),
            workspaces=workspaces_mod.Workspaces(ctx),
            builder=builder,
            cleaner=cleaner,
        )
        consumer = consumer_mod.CommandConsumer(ctx, dispatcher, client_id=f"a4c-agent-{identity.host_id}")
        watcher = docker_events.Watcher(ctx, on_gap=reporter.inventory_soon)
        self._parts = (reporter, cleaner, builder)

        sup = supervisor_mod.Supervisor(backoff_max=settings.daemon.task_restart_backoff_max)
        self.supervisor = sup
        sup.spawn("metrics-server", self._metrics_server)
        sup.spawn("publisher", publisher.run)
        sup.spawn("docker-monitor", reporter.docker_monitor)
        sup.spawn("command-consumer", consumer.run)
        sup.spawn("docker-events", watcher.run)
        sup.spawn("heartbeat", reporter.heartbeats)
        sup.spawn("inventory", reporter.inventories)
        sup.spawn("disk", reporter.disk_reports)
        sup.spawn("cleanup-scheduler", cleaner.run_scheduler)
        watchdog = systemd.watchdog_period()
        if watchdog is not None:
            sup.spawn("watchdog", lambda: self._watchdog(watchdog))
        log.info(
            "agent started",
            extra={"host_id": identity.host_id, "version": __version__, "commands_topic": consumer.topic, "tasks": sup.names()},
        )
        systemd.notify("READY=1", f"STATUS=serving host {identity.host_id}")

        await self.stopping.wait()
        await self._shutdown(consumer, dispatcher, publisher, docker)
        return 0

    # -- shutdown ------------------------------------------------------------------------

    async def _shutdown(
        self,
        consumer: consumer_mod.CommandConsumer,
        dispatcher: dispatcher_mod.Dispatcher,
        publisher: publisher_mod.Publisher,
        docker: docker_client.Docker,
    ) -> None:
        began = time.monotonic()
        deadline = self.ctx.settings.daemon.shutdown_deadline if self.ctx else self.settings.daemon.shutdown_deadline

        def left() -> float:
            return max(0.1, deadline - (time.monotonic() - began))

        systemd.notify("STOPPING=1")
        log.info("shutting down", extra={"in_flight": dispatcher.in_flight(), "deadline_s": deadline})
        sup = self.supervisor
        sup.closing = True
        consumer.stop_fetching()
        # Keep a reserve for reporting interrupted commands and flushing events.
        reserve = min(3.0, deadline * 0.25)
        await dispatcher.drain(max(0.1, left() - reserve))
        consumer.release()
        if not await sup.join("command-consumer", min(5.0, left())):
            log.warning("command consumer did not finish its last commit in time")
        await sup.stop_all(
            ["command-consumer", "docker-events", "cleanup-scheduler", "disk", "inventory", "heartbeat", "docker-monitor", "watchdog"],
            timeout=min(2.0, left()),
        )
        if not await publisher.flush(left()):
            log.warning("events still queued at shutdown", extra={"count": publisher.pending()})
        await sup.stop("publisher", 2.0)
        await sup.stop("metrics-server", 2.0)
        docker.close()
        log.info("agent stopped", extra={"seconds": round(time.monotonic() - began, 2)})

    # -- SIGHUP --------------------------------------------------------------------------

    def reload(self) -> None:
        if self.ctx is None:
            log.warning("SIGHUP before the agent finished starting; ignored")
            return
        systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = agent_settings.load(self.config_path)
        except config.ConfigError as exc:
            log.error("config reload failed; keeping the running config", extra={"error": str(exc)})
            systemd.notify("READY=1")
            return
        old = self.ctx.settings
        changed = [key for key in _RESTART_KEYS if _get(old, key) != _get(new, key)]
        self.ctx.settings = new
        logs.setup(new.logging)
        reporter, cleaner, builder = self._parts
        cleaner.reschedule()
        builder.reconfigure()
        reporter.heartbeat_soon()
        log.info("config reloaded", extra={"needs_restart": changed})
        systemd.notify("READY=1")

    # -- small root tasks ----------------------------------------------------------------

    async def _metrics_server(self) -> None:
        settings = self.ctx.settings.daemon if self.ctx else self.settings.daemon
        server = metrics.Server(settings.metrics_host, settings.metrics_port, self._health)
        server.start()
        self.metrics_port = server.port
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(server.stop)

    def _health(self) -> dict[str, object]:
        if self.ctx is None:
            return {"status": "starting"}
        self.ctx.health.tasks_ok = self.supervisor.alive()
        return self.ctx.health.snapshot()

    async def _watchdog(self, period: float) -> None:
        while True:
            if self.supervisor.alive():
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(period)


async def _report_cleanup(reporter: reports.Reporter, report: typing.Any) -> None:
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
    logs.setup(settings.logging)
    return asyncio.run(Agent(settings, config_path).run())
