"""Fixtures for packaging tests: the systemd host image, the a4c wheel and the control plane's dependencies, a release bundle."""

from __future__ import annotations

import pathlib
import time

import pytest

from tests.harness import fixtures_run
from tests.packaging import bundles, systemd_image, wheels


@pytest.fixture(scope="session")
def systemd_host_image(request: pytest.FixtureRequest, docker_client) -> str:
    """Tag of the Debian + systemd image in the harness's daemon (debootstrap cached per machine)."""
    began = time.monotonic()
    tag = systemd_image.build(docker_client, log=lambda line: fixtures_run.report(request.config, line))
    fixtures_run.report(request.config, f"systemd host image {tag} ready in {time.monotonic() - began:.1f} s")
    return tag


@pytest.fixture(scope="session")
def a4c_wheel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """``a4c-<version>-py3-none-any.whl`` built from this checkout (``pip wheel --no-deps``)."""
    began = time.monotonic()
    wheel = wheels.build_a4c_wheel(tmp_path_factory.mktemp("dist"))
    fixtures_run.report(request.config, f"built {wheel.name} in {time.monotonic() - began:.1f} s")
    return wheel


@pytest.fixture(scope="session")
def controlplane_wheelhouse(request: pytest.FixtureRequest, a4c_wheel: pathlib.Path) -> pathlib.Path:
    """Wheels of the control plane's dependencies at this virtualenv's versions (cached per machine)."""
    began = time.monotonic()
    house = wheels.wheelhouse(a4c_wheel, "controlplane")
    fixtures_run.report(request.config, f"control-plane dependency wheelhouse {house} ready in {time.monotonic() - began:.1f} s")
    return house


@pytest.fixture(scope="session")
def release_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """``a4c-<version>-py3<minor>.tar.gz`` from this checkout, as `make release` builds it (with its .sha256 beside it)."""
    began = time.monotonic()
    bundle = bundles.build(tmp_path_factory.mktemp("release"))
    fixtures_run.report(request.config, f"built {bundle.name} in {time.monotonic() - began:.1f} s")
    return bundle
