"""Workspace commands: create, start, stop, delete one container on the local daemon.

A workspace's main process (init as PID 1, keep-alive for an image whose
command would exit at once) is decided by agent/domain/main_process.py; a
create or start reports success only once the container stayed up for the
settle period (agent/crashes.py), else the workspace is ``failed``.
Published host ports are chosen once per workspace and recorded
(agent/domain/ports.py); a start whose port another program holds fails
with that as the reason instead of moving the workspace to another port.

Every handler is idempotent, because Kafka delivers at least once and a
kill -9 can land anywhere: create adopts the container its deterministic
name finds (even one a previous run created but never started), start and
stop of a container already in that state just report it, delete of a
container that is gone succeeds. Each handler emits ``workspace.state``
events and returns the job result's ``result`` dict; Docker being
unreachable propagates (the dispatcher waits and retries the whole handler).
"""

from __future__ import annotations

import logging
import socket
import time
import typing

from agent import context as context_mod
from agent import crashes, docker_client, jobs
from agent.domain import containers as spec_mod
from agent.domain import disk_limits as disk_limits_rule
from agent.domain import main_process
from agent.domain import ports as ports_mod
from shared import logs, messages

log = logging.getLogger(__name__)


def policy_of(settings: typing.Any, disk_limits: disk_limits_rule.Decision | None = None) -> spec_mod.RuntimePolicy:
    """The runtime policy; ``disk_limits`` is the agent's decision (agent/disk_limits.py), None before Docker answered once."""
    docker = settings.docker
    enforce = disk_limits_rule.asks_size(docker.enforce_disk_limit, disk_limits)
    return spec_mod.RuntimePolicy(
        publish_address=docker.publish_address,
        network=docker.network,
        restart_policy=docker.restart_policy,
        cap_drop=tuple(docker.cap_drop),
        cap_add=tuple(docker.cap_add),
        enforce_disk_limit=enforce,
        init=docker.init,
    )


class Workspaces:
    def __init__(self, ctx: context_mod.Context) -> None:
        self.ctx = ctx

    # -- commands -------------------------------------------------------------

    async def create(self, command: messages.WorkspaceCommand, job_id: str) -> dict[str, typing.Any]:
        spec = command.spec
        try:
            name = spec_mod.container_name(spec.workspace_id, self.ctx.host_id)
        except spec_mod.SpecError as exc:
            raise jobs.JobFailed(f"spec.{exc}") from exc
        with self.ctx.expectations.expect(spec.workspace_id):
            self._state(messages.WorkspaceState(workspace_id=spec.workspace_id, state="creating"))
            info = await self._find(name)
            adopted = info is not None
            if info is not None:
                log.info("workspace container exists; adopting it", extra={"container": name, "job_id": job_id})
            else:
                main = main_process.decide(spec.command, await self._image_config(spec.image, job_id))
                try:
                    container, host_config = spec_mod.create_request(
                        spec,
                        host_id=self.ctx.host_id,
                        job_id=job_id,
                        policy=policy_of(self.ctx.settings, self.ctx.disk_limits),
                        main=main,
                        host_ports=self._host_ports(spec),
                    )
                except spec_mod.SpecError as exc:
                    raise jobs.JobFailed(f"spec.{exc}") from exc
                log.info("workspace main process", extra={"container": name, "job_id": job_id, "why": main.why})
                info = await self._create(container, host_config, name, job_id)
            self._check_owned(info, name)
            info = await self._up(spec.workspace_id, name, info)
            if info.get("Image"):
                self.ctx.marks.image_used(info["Image"], time.time())
            state = spec_mod.state_from_inspect(info, workspace_id=spec.workspace_id, stopped_on_command=False)
            self._state(state)
        return self._result(state, adopted=adopted)

    async def start(self, ref: messages.WorkspaceRef, job_id: str) -> dict[str, typing.Any]:
        name = self._name(ref.workspace_id)
        with self.ctx.expectations.expect(ref.workspace_id):
            info = await self._require(name, ref.workspace_id)
            info = await self._up(ref.workspace_id, name, info)
            state = spec_mod.state_from_inspect(info, workspace_id=ref.workspace_id, stopped_on_command=False)
            self._state(state)
        return self._result(state)

    async def _up(self, workspace_id: str, name: str, info: dict[str, typing.Any]) -> dict[str, typing.Any]:
        """Start the container if needed and wait out the settle period; a container that did not stay up fails the job."""
        if not info["State"].get("Running"):
            await self._start(workspace_id, name, info)
            info = await self.ctx.docker.inspect_container(name)
        self.ctx.marks.mark_stopped(workspace_id, False)
        try:
            return await crashes.settle(self.ctx, workspace_id, name, info)
        except crashes.Failed as exc:
            raise jobs.JobFailed(str(exc)) from None

    async def stop(self, ref: messages.WorkspaceRef, job_id: str) -> dict[str, typing.Any]:
        name = self._name(ref.workspace_id)
        with self.ctx.expectations.expect(ref.workspace_id):
            info = await self._require(name, ref.workspace_id)
            # Marked before stopping: if we die mid-stop, cleanup still keeps it.
            self.ctx.marks.mark_stopped(ref.workspace_id, True)
            if info["State"].get("Running") or info["State"].get("Restarting"):
                await self.ctx.docker.stop(name, self.ctx.settings.docker.stop_timeout)
                info = await self.ctx.docker.inspect_container(name)
            state = spec_mod.state_from_inspect(info, workspace_id=ref.workspace_id, stopped_on_command=True)
            self._state(state)
        return self._result(state)

    async def delete(self, ref: messages.WorkspaceRef, job_id: str) -> dict[str, typing.Any]:
        name = self._name(ref.workspace_id)
        with self.ctx.expectations.expect(ref.workspace_id):
            info = await self._find(name)
            if info is not None:
                self._check_owned(info, name)
                try:
                    await self.ctx.docker.remove_container(name, force=True)
                except docker_client.NotFound:
                    pass  # removed meanwhile: the goal is reached
            # Any other container of this workspace on this host (an older
            # naming, or one started by hand with our labels) goes too: the
            # goal is "no container of this workspace here", not "none by this name".
            extra = await self.ctx.docker.containers(labels=[*spec_mod.owned_filters(self.ctx.host_id), f"{spec_mod.WORKSPACE}={ref.workspace_id}"])
            for other in extra:
                try:
                    await self.ctx.docker.remove_container(other["Id"], force=True)
                except docker_client.NotFound:
                    pass
                info = info or {"Id": other["Id"]}
            self.ctx.marks.mark_stopped(ref.workspace_id, False)
            self.ctx.marks.forget_ports(ref.workspace_id)
            state = messages.WorkspaceState(
                workspace_id=ref.workspace_id,
                state="deleted",
                container_id=info["Id"] if info else None,
                reason="" if info else "the container was already gone",
            )
            self._state(state)
        return {"state": "deleted", "container_id": state.container_id, "already_gone": info is None}

    # -- ports ----------------------------------------------------------------

    def _host_ports(self, spec: messages.WorkspaceSpec) -> dict[str, int]:
        """The workspace's host ports: the recorded ones, else new ones from docker.port_range, recorded before use."""
        docker = self.ctx.settings.docker
        wanted = [ports_mod.key(p.container_port, p.protocol) for p in spec.ports]
        if not wanted:
            return {}
        protocols = {p.protocol for p in spec.ports}
        try:
            chosen = ports_mod.choose(
                wanted,
                recorded=self.ctx.marks.ports_of(spec.workspace_id),
                others=self.ctx.marks.ports_of_others(spec.workspace_id),
                port_range=ports_mod.parse_range(docker.port_range),
                seed=spec.workspace_id,
                is_free=lambda port: all(port_free(docker.publish_address, port, proto) for proto in protocols),
            )
        except ports_mod.PortsExhausted as exc:
            raise jobs.JobFailed(str(exc)) from None
        # Recorded first: a crash between this and the create still finds them next time.
        self.ctx.marks.record_ports(spec.workspace_id, chosen)
        return chosen

    async def _start(self, workspace_id: str, name: str, info: dict[str, typing.Any]) -> None:
        """Start the container; a recorded host port held by another program fails the workspace, naming the port."""
        wanted = ports_mod.bindings(info)
        address = self.ctx.settings.docker.publish_address
        reason = None
        for port_key, host_port in wanted.items():
            # Checked here too: with Docker's userland proxy off, a start over a held port "succeeds" and never gets traffic.
            if not port_free(address, host_port, port_key.partition("/")[2] or "tcp"):
                reason = ports_mod.taken_reason(port_key, host_port, address)
                break
        if reason is None:
            try:
                await self.ctx.docker.start(name)
                return
            except docker_client.DockerUnavailable:
                raise
            except docker_client.DockerError as exc:
                reason = ports_mod.conflict_in(str(exc), wanted, address)
                if reason is None:
                    raise
        self._state(messages.WorkspaceState(workspace_id=workspace_id, state="failed", container_id=info.get("Id"), reason=reason))
        raise jobs.JobFailed(reason)

    # -- helpers --------------------------------------------------------------

    async def _image_config(self, image: str, job_id: str) -> dict[str, typing.Any]:
        """The image's ``Config`` (its entrypoint and command), pulling it first if allowed."""
        try:
            return (await self.ctx.docker.inspect_image(image)).get("Config") or {}
        except docker_client.NotFound as exc:
            if spec_mod.built_by_a4c(image):
                raise jobs.JobFailed(
                    f"image {image!r} is not on this host: a4c builds it on each host and never pulls it from a registry "
                    f"(removed by cleanup? the control plane rebuilds it before the next create here): {exc}"
                ) from exc
            if not self.ctx.settings.docker.pull_missing_images:
                raise jobs.JobFailed(f"image {image!r} is not on this host: {exc}") from exc
        jobs.progress(self.ctx.publisher, job_id, "pulling", f"pulling {image}")
        try:
            await self.ctx.docker.pull(image)
            return (await self.ctx.docker.inspect_image(image)).get("Config") or {}
        except docker_client.DockerUnavailable:
            raise
        except docker_client.DockerError as pull_exc:
            raise jobs.JobFailed(f"image {image!r} is not on this host and cannot be pulled: {pull_exc}") from pull_exc

    async def _create(self, container: dict, host_config: dict, name: str, job_id: str) -> dict[str, typing.Any]:
        try:
            await self.ctx.docker.create_container(container, host_config)
        except docker_client.Conflict:
            # Someone (a previous run of this command) created it meanwhile: adopt it.
            log.info("container already exists; adopting it", extra={"container": name, "job_id": job_id})
        except docker_client.NotFound as exc:
            raise jobs.JobFailed(f"image {container['image']!r} is not on this host: {exc}") from exc
        return await self.ctx.docker.inspect_container(name)

    async def _find(self, name: str) -> dict[str, typing.Any] | None:
        try:
            return await self.ctx.docker.inspect_container(name)
        except docker_client.NotFound:
            return None

    async def _require(self, name: str, workspace_id: str) -> dict[str, typing.Any]:
        info = await self._find(name)
        if info is None:
            self._state(messages.WorkspaceState(workspace_id=workspace_id, state="missing", reason="no container on this host"))
            raise jobs.JobFailed(f"workspace {workspace_id}: no container {name} on this host")
        self._check_owned(info, name)
        return info

    def _check_owned(self, info: dict[str, typing.Any], name: str) -> None:
        found = (info.get("Config") or {}).get("Labels") or {}
        if not spec_mod.is_owned(found, self.ctx.host_id):
            raise jobs.JobFailed(f"container name {name} is taken by a container this agent does not manage")

    def _name(self, workspace_id: str) -> str:
        try:
            return spec_mod.container_name(workspace_id, self.ctx.host_id)
        except spec_mod.SpecError as exc:
            raise jobs.JobFailed(str(exc)) from exc

    def _state(self, state: messages.WorkspaceState) -> None:
        # Inside a command that carried a request id (agent/dispatcher.py binds both), the
        # control plane knows WorkspaceState.job_id: name the job so its line about this change does too.
        bound = logs.current()
        if bound.get(logs.REQUEST_ID) and bound.get(logs.JOB_ID) and state.job_id is None:
            state = state.model_copy(update={"job_id": str(bound[logs.JOB_ID])})
        self.ctx.publisher.emit(messages.EventKind.WORKSPACE_STATE, state)

    @staticmethod
    def _result(state: messages.WorkspaceState, *, adopted: bool | None = None) -> dict[str, typing.Any]:
        out: dict[str, typing.Any] = {
            "state": state.state,
            "container_id": state.container_id,
            "ports": [p.model_dump() for p in state.ports],
        }
        if adopted is not None:
            out["adopted"] = adopted
        return out


def port_free(address: str, port: int, protocol: str = "tcp") -> bool:
    """Whether this host could bind ``address:port`` now (what Docker's proxy will have to do)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        # A port in TIME_WAIT is free for a listener; without this it would look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True
