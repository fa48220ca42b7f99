"""A4C as an operator installs it: a wheel built from this checkout, plus its dependencies.

* :func:`build_a4c_wheel` runs ``pip wheel --no-deps`` on the repository, every
  run (the code under test changes between runs).
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
import shutil
import subprocess
import sys
import tempfile
import tomllib

from tests.packaging import systemd_image

REPO = pathlib.Path(__file__).resolve().parents[2]


class WheelError(RuntimeError):
    """A wheel could not be built."""


def _pip(*args: str, timeout: float = 600) -> None:
    argv = [sys.executable, "-m", "pip", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        raise WheelError(f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")


def build_a4c_wheel(dest: pathlib.Path) -> pathlib.Path:
    """``a4c-<version>-py3-none-any.whl`` built from this checkout into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="a4c-wheel-") as scratch:
        # Build from a copy: setuptools writes build/ and *.egg-info into the
        # tree it builds, and others work in this checkout at the same time.
        tree = pathlib.Path(scratch) / "src"
        shutil.copytree(
            REPO, tree,
            ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "test-artifacts", "node_modules", "__pycache__", "tests", "bench"),
        )
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
    """A directory of wheels of the dependencies of ``a4c[extra]`` (not a4c itself), cached."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    constraints = "\n".join(line for line in frozen.splitlines() if not line.lower().startswith("a4c")) + "\n"
    cache = systemd_image.cache_dir()
    house = cache / f"wheelhouse-{extra}-{_dependency_key(extra, constraints)}"
    if house.is_dir():
        return house
    with systemd_image.locked(cache / f".{house.name}.lock"):
        if house.is_dir():
            return house
        partial = pathlib.Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=cache))
        try:
            (partial / "constraints.txt").write_text(constraints)
            _pip("wheel", "--quiet", "--wheel-dir", str(partial), "-c", str(partial / "constraints.txt"), f"{a4c_wheel}[{extra}]")
            for own in partial.glob("a4c-*.whl"):
                own.unlink()
            os.replace(partial, house)
            # Wheelhouses of other dependency sets are stale: keep the cache small.
            for stale in cache.glob(f"wheelhouse-{extra}-*"):
                if stale != house:
                    shutil.rmtree(stale, ignore_errors=True)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return house
