"""Workspace containers: names, labels, the create request, and reading state back.

Errors::

    SpecError              a workspace spec cannot be turned into a container

One container per workspace and host, named ``a4c-<host id[:8]>-<workspace_id>``:
the name is the idempotency key, so a repeated or redelivered create (even
across a kill -9) meets the existing container and adopts it instead of making
a second one. The host part keeps agents that share one Docker daemon (two
agents on one machine, the test suite) apart, and lets a lost workspace be
recreated on another host while its old copy still exists.
"""

from __future__ import annotations

import dataclasses
import re
import typing

from agent.domain import main_process
from shared import messages

PREFIX = "a4c-"
MANAGED = "a4c.managed"
WORKSPACE = "a4c.workspace"
HOST = "a4c.host"
JOB = "a4c.job"
IMAGE = "a4c.image"

# The control plane has agents build registered images as a4c/<name>:latest
# (controlplane/services/images.py, tag_for); nothing is pushed, so no
# registry can have them and a missing one is never pulled.
BUILT_PREFIX = "a4c/"

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")

# Docker states that count as "running" for a workspace: restarting and
# paused containers still hold the workspace's resources and ports.
_RUNNING = {"running", "restarting", "paused"}


class SpecError(ValueError):
    """A workspace spec cannot be turned into a container (names the field)."""


@dataclasses.dataclass(frozen=True)
class RuntimePolicy:
    """Host-wide container settings that are not part of a workspace spec."""

    publish_address: str = "0.0.0.0"
    network: str | None = None
    restart_policy: str = "unless-stopped"
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    enforce_disk_limit: bool = False
    init: bool = True


def built_by_a4c(image: str) -> bool:
    """Whether ``image`` is one a4c builds on each host (never pulled from a registry)."""
    return image.startswith(BUILT_PREFIX)


def container_name(workspace_id: str, host_id: str) -> str:
    if not _NAME_OK.match(workspace_id):
        raise SpecError(f"workspace_id: {workspace_id!r} is not a valid container name part (letters, digits, _ . -)")
    host_part = re.sub(r"[^A-Za-z0-9]", "", host_id)[:8] or "host"
    return f"{PREFIX}{host_part}-{workspace_id}"


def labels(*, workspace_id: str, host_id: str, job_id: str | None) -> dict[str, str]:
    return {MANAGED: "true", WORKSPACE: workspace_id, HOST: host_id, JOB: job_id or ""}


def owned_filters(host_id: str) -> list[str]:
    """Docker label filters selecting exactly this host's a4c objects."""
    return [f"{MANAGED}=true", f"{HOST}={host_id}"]


def is_owned(container_labels: typing.Mapping[str, str] | None, host_id: str) -> bool:
    found = container_labels or {}
    return found.get(MANAGED) == "true" and found.get(HOST) == host_id


def create_request(
    spec: messages.WorkspaceSpec,
    *,
    host_id: str,
    job_id: str | None,
    policy: RuntimePolicy,
    main: main_process.MainProcess | None = None,
    host_ports: typing.Mapping[str, int] | None = None,
) -> tuple[dict[str, typing.Any], dict[str, typing.Any]]:
    """(create_container kwargs, create_host_config kwargs) for one workspace.

    ``main`` is the decided main process (agent/domain/main_process.py);
    None runs ``spec.command`` as Docker would. ``host_ports`` maps a
    container port key (``22/tcp``) to its host port (agent/domain/ports.py);
    a port missing from it gets whatever free port Docker picks at each start.
    """
    chosen = host_ports or {}
    name = container_name(spec.workspace_id, host_id)
    memory = spec.memory_mb * 1024 * 1024
    port_keys = [f"{p.container_port}/{p.protocol}" for p in spec.ports]
    host_config: dict[str, typing.Any] = {
        "nano_cpus": round(spec.cpus * 1e9),
        "mem_limit": memory,
        # Same as the memory limit: a workspace gets no swap on top of its memory.
        "memswap_limit": memory,
        "pids_limit": spec.pids_limit,
        "privileged": False,
        "security_opt": ["no-new-privileges:true"],
        # Docker's init (tini) as PID 1: signals reach the main process, zombies are reaped.
        "init": True if policy.init else None,
        "cap_drop": list(policy.cap_drop),
        "cap_add": list(policy.cap_add) or None,
        "restart_policy": {"Name": policy.restart_policy} if policy.restart_policy != "no" else None,
        # A named host port stays in the container's HostConfig across restarts; without one Docker picks anew each start.
        "port_bindings": {key: (policy.publish_address, chosen[key]) if key in chosen else (policy.publish_address,) for key in port_keys} or None,
    }
    if policy.network:
        host_config["network_mode"] = policy.network
    if spec.disk_gb is not None and policy.enforce_disk_limit:
        host_config["storage_opt"] = {"size": f"{spec.disk_gb}G"}
    container: dict[str, typing.Any] = {
        "image": spec.image,
        "name": name,
        "hostname": spec.workspace_id[:63],
        "command": main.command if main is not None else spec.command,
        "environment": dict(spec.env),
        "labels": labels(workspace_id=spec.workspace_id, host_id=host_id, job_id=job_id),
        "ports": [(p.container_port, p.protocol) for p in spec.ports] or None,
        "detach": True,
    }
    if main is not None and main.entrypoint is not None:
        container["entrypoint"] = main.entrypoint
    return container, {k: v for k, v in host_config.items() if v is not None}


def published_ports(inspect: typing.Mapping[str, typing.Any]) -> list[messages.PublishedPort]:
    """Ports a running container publishes, from ``docker inspect`` output."""
    bound = ((inspect.get("NetworkSettings") or {}).get("Ports")) or {}
    out: list[messages.PublishedPort] = []
    for key, bindings in sorted(bound.items()):
        port, _, proto = key.partition("/")
        for binding in bindings or []:
            if not binding.get("HostPort"):
                continue
            out.append(
                messages.PublishedPort(
                    container_port=int(port),
                    protocol=proto or "tcp",
                    host_ip=binding.get("HostIp") or "0.0.0.0",
                    host_port=int(binding["HostPort"]),
                )
            )
    return out


def summary_ports(summary: typing.Mapping[str, typing.Any]) -> list[messages.PublishedPort]:
    """Ports from a ``docker ps`` row (the list endpoint's shape differs from inspect's)."""
    out = []
    for p in summary.get("Ports") or []:
        if p.get("PublicPort"):
            out.append(
                messages.PublishedPort(
                    container_port=int(p["PrivatePort"]),
                    protocol=p.get("Type") or "tcp",
                    host_ip=p.get("IP") or "0.0.0.0",
                    host_port=int(p["PublicPort"]),
                )
            )
    return out


def workspace_state(docker_status: str, *, stopped_on_command: bool) -> str:
    """Map Docker's container status onto the workspace states of the wire schema."""
    if docker_status in _RUNNING:
        return "running"
    if docker_status == "created":
        return "creating" if not stopped_on_command else "stopped"
    if docker_status in ("exited", "dead"):
        return "stopped" if stopped_on_command else "exited"
    return "missing"


def state_from_inspect(
    inspect: typing.Mapping[str, typing.Any], *, workspace_id: str, stopped_on_command: bool, reason: str = ""
) -> messages.WorkspaceState:
    state = inspect.get("State") or {}
    status = state.get("Status", "")
    mapped = workspace_state(status, stopped_on_command=stopped_on_command)
    exit_code = state.get("ExitCode") if mapped in ("exited", "stopped") else None
    if mapped == "exited" and not reason:
        reason = "out of memory" if state.get("OOMKilled") else "the container exited on its own"
    return messages.WorkspaceState(
        workspace_id=workspace_id,
        state=mapped,  # type: ignore[arg-type]
        container_id=inspect.get("Id"),
        ports=published_ports(inspect) if mapped == "running" else [],
        exit_code=exit_code,
        reason=reason,
    )


def name_of(summary: typing.Mapping[str, typing.Any]) -> str:
    names = summary.get("Names") or []
    return names[0].lstrip("/") if names else ""
