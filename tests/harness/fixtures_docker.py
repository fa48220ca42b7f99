"""Docker fixtures: a daemon, a client, the offline base image, and the cleanup after them.

``docker_host`` is the daemon at $DOCKER_HOST when one answers there, else a
private ``dockerd`` this run starts (and exports as DOCKER_HOST for the
subprocesses tests start, such as an agent). At the end of the session the
containers tests left (labelled ``TEST_LABEL`` or ``a4c.workspace``), images
tagged ``a4c-test*`` other than the base image, and test networks are
removed; anything that cannot be removed fails the session.
"""

from __future__ import annotations

import os
import time
import typing

import docker
import pytest

from tests.harness import base_image as base_image_mod
from tests.harness import docker_leftovers, dockerd, fixtures_run, run

TEST_LABEL = run.TEST_LABEL


@pytest.fixture(scope="session")
def docker_host(request: pytest.FixtureRequest, harness_run: run.Run) -> typing.Iterator[str]:
    started_at = time.time()
    external = os.environ.get("DOCKER_HOST")
    daemon = None
    if external and dockerd.answers(external):
        host = external
    else:
        daemon = dockerd.DockerDaemon(harness_run)
        seconds = daemon.start()
        fixtures_run.report(request.config, f"started a private dockerd in {seconds:.2f} s ({daemon.host})")
        host = daemon.host
        os.environ["DOCKER_HOST"] = host
    scope = docker_leftovers.Scope(harness_run.id, started_at, own_daemon=daemon is not None, keep_image=base_image_mod.TAG)
    try:
        yield host
    finally:
        problems = _clean(request.config, host, scope)
        if daemon is not None:
            daemon.stop()
            if external is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = external
        if problems:
            pytest.fail("Docker leftovers could not be removed:\n  " + "\n  ".join(problems), pytrace=False)


def _clean(config: pytest.Config, host: str, scope: docker_leftovers.Scope) -> list[str]:
    client = docker.DockerClient(base_url=host, version="auto", timeout=60)
    try:
        removed = docker_leftovers.remove(client, scope)
        if removed:
            fixtures_run.report(config, "removed what tests left on Docker: " + ", ".join(removed))
        return docker_leftovers.remaining(client, scope)
    except docker.errors.DockerException as error:
        return [f"cleanup failed: {error}"]
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> typing.Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_host, version="auto", timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(request: pytest.FixtureRequest, docker_client: docker.DockerClient) -> str:
    """Tag of the offline busybox base image (``sh`` as CMD); ``FROM`` it in test Dockerfiles."""
    began = time.monotonic()
    tag = base_image_mod.build(docker_client)
    fixtures_run.report(request.config, f"built base image {tag} in {time.monotonic() - began:.2f} s")
    return tag
