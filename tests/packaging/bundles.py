"""Release bundles as `make release` builds them (packaging/release.py), for tests that install them.

A build takes seconds of both cores (pip wheel, hashing, tar), and under
xdist several workers want the same one (the checkout's, its next version),
so one run builds each version once: the first worker builds it into the
run's shared directory (tests/harness/shared_servers.py) while the others wait
on its lock, and every caller gets its own copy.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

from a4c import debian_image
from tests.harness import shared_servers

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "release.py"


class BundleError(RuntimeError):
    """A bundle could not be built."""


def build(dest: pathlib.Path, *, version: str | None = None) -> pathlib.Path:
    """``dest/a4c-<version>-py3<minor>.tar.gz`` (with its .sha256) for this virtualenv's Python: the servers' Python too."""
    shared = shared_servers.directory()
    if shared is None:
        return _build(dest, version)
    store = shared / "bundles" / (version or "checkout")
    store.mkdir(parents=True, exist_ok=True)
    with debian_image.locked(store / ".lock"):
        built = sorted(store.glob("a4c-*.tar.gz"))
        tarball = built[0] if built else _build(store, version)
    dest.mkdir(parents=True, exist_ok=True)
    for path in (tarball, tarball.with_name(tarball.name + ".sha256")):
        shutil.copy2(path, dest / path.name)
    return dest / tarball.name


def _build(dest: pathlib.Path, version: str | None) -> pathlib.Path:
    argv = [sys.executable, str(SCRIPT), "--dest", str(dest), "--python", f"3.{sys.version_info.minor}"]
    if version is not None:
        argv += ["--version", version]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise BundleError(f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    (tarball,) = (pathlib.Path(line) for line in done.stdout.split())
    return tarball


def version(bundle: pathlib.Path) -> str:
    """a4c-0.1.0-py311.tar.gz -> 0.1.0"""
    found = re.fullmatch(r"a4c-(.+)-py3\d+\.tar\.gz", bundle.name)
    if found is None:
        raise BundleError(f"not a bundle's name: {bundle.name}")
    return found.group(1)
