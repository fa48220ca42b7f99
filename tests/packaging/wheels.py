"""A4C as an operator installs it: a wheel built from this checkout, plus its dependencies.

* :func:`build_a4c_wheel` runs ``pip wheel --no-deps`` on the repository, every
  run (the code under test changes between runs); with ``version=`` it builds
  the same code as another release (:func:`next_version`), for upgrade tests.
* :func:`wheelhouse` holds wheels of the dependencies of ``a4c[agent]`` (or
  ``a4c[controlplane]``) at exactly the versions this virtualenv has, cached
  per machine under the cache directory, keyed by those versions and the
  project's dependency lists. The test servers install from it with
  ``--no-index --find-links``, as an air-gapped fleet would from its own
  mirror, so an install needs no index and takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

from packaging import version as pep440
from tests.packaging import systemd_image

REPO = pathlib.Path(__file__).resolve().parents[2]


class WheelError(RuntimeError):
    """A wheel could not be built."""


def _pip(*args: str, timeout: float = 600) -> None:
    argv = [sys.executable, "-m", "pip", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        raise WheelError(f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")


def wheel_version(wheel: pathlib.Path) -> str:
    """a4c-0.1.0-py3-none-any.whl -> 0.1.0"""
    return wheel.name.split("-")[1]


def next_version(current: str) -> str:
    """A release above ``current``: its last release number plus one (0.1.0 -> 0.1.1, 0.2.0.dev3 -> 0.2.1)."""
    release = list(pep440.Version(current).release)
    release[-1] += 1
    bumped = ".".join(map(str, release))
    assert pep440.Version(bumped) > pep440.Version(current), (current, bumped)
    return bumped


def build_a4c_wheel(dest: pathlib.Path, *, version: str | None = None) -> pathlib.Path:
    """``a4c-<version>-py3-none-any.whl`` built from this checkout into ``dest``.

    With ``version``, the copy's pyproject.toml says that version instead: the
    same code released under another number.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="a4c-wheel-") as scratch:
        # Build from a copy: setuptools writes build/ and *.egg-info into the
        # tree it builds, and others work in this checkout at the same time.
        tree = pathlib.Path(scratch) / "src"
        shutil.copytree(
            REPO,
            tree,
            ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "test-artifacts", "node_modules", "__pycache__", "tests", "bench"),
        )
        if version is not None:
            pyproject = tree / "pyproject.toml"
            text, count = re.subn(r'^version = "[^"]*"$', f'version = "{version}"', pyproject.read_text(), count=1, flags=re.M)
            if count != 1:
                raise WheelError(f'no `version = "..."` line in {pyproject}')
            pyproject.write_text(text)
        _pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(dest), str(tree))
    wheels = sorted(dest.glob("a4c-*.whl"))
    if len(wheels) != 1:
        raise WheelError(f"expected one a4c wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def _dependency_key(extra: str, constraints: str) -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    spec = repr((extra, sorted(project["dependencies"]), sorted(project["optional-dependencies"][extra]), constraints))
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def wheelhouse(a4c_wheel: pathlib.Path, extra: str = "agent") -> pathlib.Path:
    """A directory of wheels of the dependencies of ``a4c[extra]`` (not a4c itself), cached.

    Complete only with its ``constraints.txt`` and wheels: it is built under
    a temporary name and moved into place whole, and Docker creates a missing
    bind-mount source as an empty directory, so a bare directory at this path
    proves nothing (it once left every later rollout with no wheels).
    """
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True).stdout
    constraints = "\n".join(line for line in frozen.splitlines() if not line.lower().startswith("a4c")) + "\n"
    cache = systemd_image.cache_dir()
    house = cache / f"wheelhouse-{extra}-{_dependency_key(extra, constraints)}"
    if _complete(house):
        os.utime(house)  # in use: not stale for another checkout's build (_remove_stale)
        return house
    with systemd_image.locked(cache / f".{house.name}.lock"):
        if _complete(house):
            return house
        shutil.rmtree(house, ignore_errors=True)
        partial = pathlib.Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=cache))
        try:
            partial.chmod(0o755)  # mkdtemp's 0700 would hide it from a container's unprivileged user
            (partial / "constraints.txt").write_text(constraints)
            _pip("wheel", "--quiet", "--wheel-dir", str(partial), "-c", str(partial / "constraints.txt"), f"{a4c_wheel}[{extra}]")
            for own in partial.glob("a4c-*.whl"):
                own.unlink()
            os.replace(partial, house)
            _remove_stale(cache, extra, house)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return house


def _complete(house: pathlib.Path) -> bool:
    return (house / "constraints.txt").is_file() and any(house.glob("*.whl"))


# Another checkout on this machine (a branch with other dependencies) may be
# mounting its wheelhouse into a server right now: only old ones go.
STALE_AFTER_S = 24 * 3600


def _remove_stale(cache: pathlib.Path, extra: str, keep: pathlib.Path) -> None:
    for other in cache.glob(f"wheelhouse-{extra}-*"):
        try:
            old = time.time() - other.stat().st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            continue
        if other != keep and old:
            shutil.rmtree(other, ignore_errors=True)
