"""`a4c debian-image` makes the README's `FROM debian:12` work without Docker Hub.

debootstrap from the mirror apt uses, kept as a tarball (the second run only
imports), and `docker import` with bash as the command, as Docker Hub's
debian:12 has. Needs root and debootstrap, as `make deps` provides.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.cli.a4c_up import BIN
from tests.packaging import systemd_image


@pytest.fixture
def cache():
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("needs root and debootstrap (make deps installs it)")
    # The suite's cache (one debootstrap per machine and recipe, not per run).
    return systemd_image.cache_dir() / "a4c"  # where the README walkthrough test (XDG_CACHE_HOME) keeps it too


def _run(docker_host: str, cache, tag: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": docker_host}
    return subprocess.run(
        [str(BIN / "a4c"), "debian-image", "--tag", tag, "--cache", str(cache)], capture_output=True, text=True, env=env, timeout=900
    )


def test_a4c_debian_image_imports_a_bookworm_whose_command_is_bash_and_a_second_run_reuses_the_root_fs(docker_host, docker_client, cache):
    tag = "a4c-test/debian:12"
    first = _run(docker_host, cache, tag)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{tag} is sha256:" in first.stdout and docker_host in first.stdout
    image = docker_client.images.get(tag)
    assert image.attrs["Config"]["Cmd"] == ["bash"]
    version = docker_client.containers.run(tag, ["cat", "/etc/debian_version"], remove=True).decode()
    assert version.startswith("12."), version

    docker_client.images.remove(tag, force=True)
    second = _run(docker_host, cache, tag)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "debootstrap" not in second.stdout, "the cached root filesystem is imported again, not made again"
    # The same root filesystem (an import stamps a new creation time, so the image id differs).
    assert docker_client.images.get(tag).attrs["RootFS"]["Layers"] == image.attrs["RootFS"]["Layers"]


def test_a4c_debian_image_without_a_known_docker_daemon_says_how_to_get_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    done = subprocess.run(
        [str(BIN / "a4c"), "debian-image", "--state-dir", str(tmp_path / "none")], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1
    assert f"start `a4c up --state-dir {tmp_path / 'none'}` once first, or set DOCKER_HOST" in done.stderr
