"""Finding and removing what tests left on the Docker daemon.

On the run's private daemon everything test- or agent-labelled is ours. On a
daemon someone else also uses (DOCKER_HOST pointed at a shared engine) the
harness removes only what is provably this run's: containers labelled with its
run id, and agent workspaces and ``a4c-test`` images created after the run
began. (Images are not scoped by label because tests build them from plain
Dockerfiles; an earlier version removed every ``a4c-test`` tag, and a nested
session in the test suite deleted its parent's systemd host image.)
"""

from __future__ import annotations

import dataclasses
import datetime

import docker

from tests.harness import run

_DEFAULT_NETWORKS = {"bridge", "host", "none"}


@dataclasses.dataclass(frozen=True)
class Scope:
    run_id: str
    started_at: float  # unix time the run began
    own_daemon: bool
    keep_image: str  # the base image tag


def _containers(client: docker.DockerClient, scope: Scope) -> list:
    labelled = client.containers.list(all=True, filters={"label": f"{run.TEST_LABEL}={scope.run_id}"})
    workspaces = client.containers.list(all=True, filters={"label": run.WORKSPACE_LABEL})
    if not scope.own_daemon:
        workspaces = [c for c in workspaces if _created(c) >= scope.started_at]
    unique = {c.id: c for c in labelled + workspaces}
    return list(unique.values())


def _created(obj) -> float:  # docker's Container or Image
    stamp = obj.attrs.get("Created", "")
    try:
        # Docker stamps nanoseconds; Python parses up to microseconds.
        head, _, frac = stamp.rstrip("Z").partition(".")
        parsed = datetime.datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}+00:00")
        return parsed.timestamp()
    except ValueError:
        return float("inf")  # unknown age: treat as ours only if it is labelled with the run id


def _images(client: docker.DockerClient, scope: Scope) -> list[str]:
    images = client.images.list()
    if not scope.own_daemon:
        images = [i for i in images if _created(i) >= scope.started_at]
    tags = [tag for image in images for tag in image.tags]
    return [t for t in tags if t.startswith(run.TEST_IMAGE_PREFIX) and t != scope.keep_image]


def _networks(client: docker.DockerClient, scope: Scope) -> list:
    if scope.own_daemon:
        return [n for n in client.networks.list() if n.name not in _DEFAULT_NETWORKS]
    return client.networks.list(filters={"label": f"{run.TEST_LABEL}={scope.run_id}"})


def remove(client: docker.DockerClient, scope: Scope) -> list[str]:
    """Remove leftovers; returns a description of each container and network removed.

    Images are not listed: tests build them and rely on this cleanup.
    """
    removed = []
    for container in _containers(client, scope):
        container.remove(force=True, v=True)
        removed.append(f"container {container.name} (image {container.attrs['Config']['Image']})")
    for tag in _images(client, scope):
        try:
            client.images.remove(tag, force=True)
        except docker.errors.NotFound:
            pass  # removed with an earlier tag of the same image
    for network in _networks(client, scope):
        network.remove()
        removed.append(f"network {network.name}")
    filters = {} if scope.own_daemon else {"label": f"{run.TEST_LABEL}={scope.run_id}"}
    client.volumes.prune(filters=filters)
    return removed


def remaining(client: docker.DockerClient, scope: Scope) -> list[str]:
    found = [f"container {c.name} still exists" for c in _containers(client, scope)]
    found += [f"image {tag} still exists" for tag in _images(client, scope)]
    found += [f"network {n.name} still exists" for n in _networks(client, scope)]
    return found
