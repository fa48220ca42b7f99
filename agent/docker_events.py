"""Workspace state changes nobody commanded, from Docker's event stream.

A container that dies on its own (its process exited, the OOM killer), is
restarted by its restart policy, or is removed behind the agent's back
produces a ``workspace.state`` event here; one that keeps exiting is
stopped and reported ``failed`` (agent/crashes.py). Changes the agent is making
itself are skipped (:class:`agent.context.Expectations`): the command
handler reports those, with its job. An event in the short tail after such a
change may be someone else's, so it asks for an inventory instead.

The stream is read in a thread (the SDK blocks) and filtered by Docker to
this host's a4c containers. When it breaks (Docker restarted), the watcher
reconnects with backoff from the time of the last event it saw, and asks
for a full inventory, since anything in the gap may be missing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import typing

from agent import context as context_mod
from agent import crashes, docker_client
from agent.domain import containers as spec_mod
from shared import messages
from shared.domain import backoff

log = logging.getLogger(__name__)

_ACTIONS = ("die", "start", "destroy", "oom")


class Watcher:
    def __init__(self, ctx: context_mod.Context, *, on_gap: typing.Callable[[], None]) -> None:
        self.ctx = ctx
        self.on_gap = on_gap
        self._since: float | None = None
        self._loops = crashes.CrashLoops()

    async def run(self) -> None:
        """Root task."""
        # A stream that followed for a minute broke afresh: start again from the shortest delay.
        delays = backoff.exponential(0.5, self.ctx.settings.daemon.docker_check_interval, healthy_after=60.0)
        loop = asyncio.get_running_loop()
        while True:
            await self.ctx.health.docker_up.wait()
            began = loop.time()
            try:
                await self._follow()
            except docker_client.DockerUnavailable as exc:
                self.ctx.health.docker(False, str(exc))
            except docker_client.DockerError as exc:
                log.warning("docker event stream failed", extra={"error": str(exc)})
            self.on_gap()
            await asyncio.sleep(delays.next(healthy_for=loop.time() - began))

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        filters = {"type": ["container"], "label": spec_mod.owned_filters(self.ctx.host_id), "event": list(_ACTIONS)}
        # The SDK takes whole seconds; Docker's events carry them too.
        since = int(self._since) if self._since is not None else None
        holder: dict[str, typing.Any] = {}

        def read() -> None:
            try:
                stream = self.ctx.docker.client().events(decode=True, filters=filters, since=since)
                holder["stream"] = stream
                loop.call_soon_threadsafe(queue.put_nowait, ("open", None))
                for event in stream:
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, ("event", event))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except BaseException as exc:  # noqa: BLE001 - handed to the loop
                if not stop.is_set():
                    loop.call_soon_threadsafe(queue.put_nowait, ("error", docker_client.translate(exc)))

        thread = threading.Thread(target=read, name="docker-events", daemon=True)
        thread.start()
        try:
            while True:
                what, item = await queue.get()
                if what == "open":
                    log.debug("following docker events")
                elif what == "event":
                    self._since = float(item.get("time") or time.time())
                    await self._handle(item)
                elif what == "end":
                    return
                else:
                    raise item
        finally:
            stop.set()
            stream = holder.get("stream")
            if stream is not None:
                try:
                    stream.close()
                except Exception:  # noqa: BLE001, S110 - closing a broken stream
                    pass

    async def _handle(self, event: dict[str, typing.Any]) -> None:
        attrs = (event.get("Actor") or {}).get("Attributes") or {}
        workspace_id = attrs.get(spec_mod.WORKSPACE)
        action = event.get("Action") or event.get("status")
        if not workspace_id or action not in _ACTIONS:
            return
        if self.ctx.expectations.expected(workspace_id):
            if self.ctx.expectations.settling(workspace_id):
                # A late event of the agent's own change, or a change by someone else
                # (a container removed right after a create): an inventory now tells.
                self.on_gap()
            return
        container_id: str = (event.get("Actor") or {}).get("ID") or event.get("id") or ""
        if action == "oom":
            log.warning("workspace container ran out of memory", extra={"workspace_id": workspace_id})
            return
        if action == "destroy":
            state = messages.WorkspaceState(
                workspace_id=workspace_id, state="missing", container_id=container_id, reason="the container was removed outside the agent"
            )
        else:
            try:
                info = await self.ctx.docker.inspect_container(container_id)
            except docker_client.NotFound:
                return  # already destroyed: its destroy event follows
            stopped = workspace_id in self.ctx.marks.stopped
            reason = ""
            if action == "die":
                code = attrs.get("exitCode")
                oom = (info.get("State") or {}).get("OOMKilled")
                reason = "killed: out of memory" if oom else f"the container exited on its own (exit code {code})"
            else:
                reason = "started outside the agent (restart policy or by hand)"
            state = spec_mod.state_from_inspect(info, workspace_id=workspace_id, stopped_on_command=stopped, reason=reason)
            if action == "die" and not stopped and await self._crash_loop(workspace_id, container_id, info):
                return
            if action == "die":
                # The inspect may already show the restart policy's next start;
                # the die itself is what this event reports.
                state = state.model_copy(update={"state": "stopped" if stopped else "exited", "exit_code": _int(attrs.get("exitCode")), "ports": []})
        log.info("workspace changed outside the agent", extra={"workspace_id": workspace_id, "state": state.state, "reason": state.reason})
        self.ctx.publisher.emit(messages.EventKind.WORKSPACE_STATE, state)

    async def _crash_loop(self, workspace_id: str, container_id: str, info: dict[str, typing.Any]) -> bool:
        """Count an exit; at ``crash_loop_exits`` within the window, stop the container and report it failed."""
        docker = self.ctx.settings.docker
        exits = self._loops.exited(workspace_id, limit=docker.crash_loop_exits, window=docker.crash_loop_window)
        if exits is None:
            return False
        with self.ctx.expectations.expect(workspace_id):
            try:
                await crashes.fail(
                    self.ctx,
                    workspace_id,
                    container_id,
                    info,
                    f"crash loop: the container exited {exits} times within {docker.crash_loop_window:g} s",
                    restarts=int(info.get("RestartCount") or 0),
                )
            except docker_client.NotFound:
                return True  # removed meanwhile: its destroy event follows
        return True


def _int(value: typing.Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
