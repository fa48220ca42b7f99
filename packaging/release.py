#!/usr/bin/env python3
"""Release bundles: everything a host needs to install A4C with no package index.

``make release`` runs this script. Per supported CPython that exists on this
machine it writes ``dist/release/a4c-<version>-py3<minor>.tar.gz`` and a
``.sha256`` beside it. The tarball holds one directory,
``a4c-<version>-py3<minor>/``::

    wheels/                     the a4c wheel and a wheel of every dependency of a4c[agent,controlplane]
    requirements.txt            every wheel as `name==version --hash=sha256:...`, a4c included
    requirements-agent.txt      the subset an agent host needs (a4c[agent])
    requirements-controlplane.txt  the subset a control-plane host needs (a4c[controlplane])
    units/                      the systemd units of packaging/systemd/
    VERSION                     the version, one line
    SHA256SUMS                  of every other file in the directory (`sha256sum -c SHA256SUMS`)

so that ``pip install --no-index --find-links wheels --require-hashes -r
requirements.txt`` installs it offline (docs/operations/rollout.md).

Dependencies are pinned to the versions installed where this script runs (its
``pip freeze``): the bundle ships what was tested, not what the index serves
that day. Building needs the index (or pip's cache); installing never does.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = pathlib.Path(__file__).resolve().parents[1]
SUPPORTED = (11, 12, 13)  # CPython 3.<minor>
EXTRAS = ("agent", "controlplane")
# What a copy of the tree for building the wheel leaves out: build output,
# caches and what the wheel never contains.
_NOT_BUILT = (
    "*.egg-info",
    ".git",
    ".venv",
    "__pycache__",
    "bench",
    "build",
    "dist",
    "node_modules",
    "test-artifacts",
    "tests",
    ".mypy_cache",
    ".ruff_cache",
)


class ReleaseError(RuntimeError):
    """A bundle could not be built."""


# -- pure: names, pins and checksums ---------------------------------------------------


def bundle_name(version: str, minor: int) -> str:
    """a4c-0.1.0-py311: the tarball's stem and its one top-level directory."""
    return f"a4c-{version}-py3{minor}"


@dataclasses.dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503)
    version: str
    sha256: str

    def line(self, extras: tuple[str, ...] = ()) -> str:
        wanted = f"[{','.join(extras)}]" if extras else ""
        return f"{self.name}{wanted}=={self.version} --hash=sha256:{self.sha256}"


def pin(wheel_name: str, sha256: str) -> Pin:
    name, version, _build, _tags = parse_wheel_filename(wheel_name)
    return Pin(str(name), str(version), sha256)


def requirements(pins: list[Pin], *, extras: tuple[str, ...] = EXTRAS, only: set[str] | None = None) -> str:
    """requirements.txt: one pinned, hashed line per wheel (a4c with ``extras``), sorted; ``only`` keeps those names."""
    names = [p.name for p in pins]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ReleaseError(f"more than one wheel of {duplicates}: pip would refuse the requirements")
    chosen = [p for p in pins if only is None or p.name in only]
    lines = [p.line(extras if p.name == "a4c" else ()) for p in sorted(chosen, key=lambda p: p.name)]
    return "".join(f"{line}\n" for line in lines)


def sha256sums(digests: dict[str, str]) -> str:
    """`sha256sum` format (two spaces), sorted by path, so `sha256sum -c` checks it."""
    return "".join(f"{digests[path]}  {path}\n" for path in sorted(digests))


def frozen_constraints(freeze: str) -> str:
    """`pip freeze` output as constraints: every pinned line except a4c itself and editable installs."""
    kept = [line for line in freeze.splitlines() if "==" in line and canonicalize_name(line.split("==")[0]) != "a4c"]
    return "".join(f"{line}\n" for line in kept)


def with_version(pyproject: str, version: str) -> str:
    """pyproject.toml saying ``version`` instead: the same code released under another number."""
    text, count = re.subn(r'^version = "[^"]*"$', f'version = "{version}"', pyproject, count=1, flags=re.M)
    if count != 1:
        raise ReleaseError('no `version = "..."` line in pyproject.toml')
    return text


def project_version(pyproject: str) -> str:
    found = re.search(r'^version = "([^"]+)"$', pyproject, re.M)
    if found is None:
        raise ReleaseError('no `version = "..."` line in pyproject.toml')
    return found.group(1)


# -- I/O: pip, files, tarballs ----------------------------------------------------------


def _run(argv: list[str], *, timeout: float = 1200) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise ReleaseError(f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_a4c_wheel(dest: pathlib.Path, version: str | None) -> pathlib.Path:
    """The a4c wheel, built from a copy of the tree (setuptools writes build/ into the tree it builds)."""
    with tempfile.TemporaryDirectory(prefix="a4c-release-src-") as scratch:
        tree = pathlib.Path(scratch) / "src"
        shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(*_NOT_BUILT))
        if version is not None:
            pyproject = tree / "pyproject.toml"
            pyproject.write_text(with_version(pyproject.read_text(), version))
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dest), str(tree)])
    built = sorted(dest.glob("a4c-*.whl"))
    if len(built) != 1:
        raise ReleaseError(f"expected one a4c wheel in {dest}, found {[w.name for w in built]}")
    return built[0]


def _candidates(minor: int) -> list[str]:
    """Interpreters that may be CPython 3.<minor>: python3.<minor> on PATH, then pyenv's installs of it."""
    found = [path for path in [shutil.which(f"python3.{minor}")] if path is not None]
    pyenv = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv")) / "versions"
    found += [str(p) for p in sorted(pyenv.glob(f"3.{minor}.*/bin/python3.{minor}"), reverse=True)]
    return found


def _works(python: str, minor: int) -> str | None:
    """None when ``python`` is CPython 3.<minor> and can make virtualenvs, else why not."""
    probe = subprocess.run(
        [python, "-c", f"import ensurepip, sys, venv; sys.exit(sys.version_info[:2] != (3, {minor}))"], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return None
    return (probe.stderr.strip().splitlines() or [f"not Python 3.{minor}"])[-1]


def interpreters(wanted: list[int]) -> dict[int, str]:
    """3.<minor> -> an interpreter of it that can make virtualenvs: the one running this script for its own version."""
    found: dict[int, str] = {}
    for minor in wanted:
        if (3, minor) == sys.version_info[:2]:
            found[minor] = sys.executable
            continue
        reasons = []
        for python in _candidates(minor):
            reason = _works(python, minor)
            if reason is None:
                found[minor] = python
                break
            reasons.append(f"{python}: {reason}")
        else:
            print(f"note: no usable Python 3.{minor} on this machine ({'; '.join(reasons) or 'none found'}): no py3{minor} bundle", file=sys.stderr)
    return found


def _pip_for(python: str, scratch: pathlib.Path) -> list[str]:
    """pip running under ``python``: this one's own, or a throwaway virtualenv's for another interpreter."""
    if python == sys.executable:
        return [sys.executable, "-m", "pip"]
    venv = scratch / "pip-venv"
    _run([python, "-m", "venv", str(venv)])
    return [str(venv / "bin" / "python"), "-m", "pip"]


def _resolved(pip: list[str], wheels: pathlib.Path, requirement: str) -> set[str]:
    """Names pip installs for ``requirement`` from ``wheels`` alone: a dry run that never asks an index."""
    report = _run(
        [*pip, "install", "--quiet", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(wheels), "--report", "-", requirement]
    )
    return {canonicalize_name(item["metadata"]["name"]) for item in json.loads(report)["install"]}


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The same bytes in, the same tarball out, whoever builds it.
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def build_bundle(dest: pathlib.Path, a4c_wheel: pathlib.Path, version: str, minor: int, python: str, constraints: str) -> pathlib.Path:
    """dest/a4c-<version>-py3<minor>.tar.gz and its .sha256; returns the tarball."""
    name = bundle_name(version, minor)
    with tempfile.TemporaryDirectory(prefix="a4c-release-") as scratch_dir:
        scratch = pathlib.Path(scratch_dir)
        root = scratch / name
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        shutil.copy2(a4c_wheel, wheels / a4c_wheel.name)
        (scratch / "constraints.txt").write_text(constraints)
        pip = _pip_for(python, scratch)
        # `pip wheel` builds a wheel for a dependency published only as an sdist.
        _run(
            [
                *pip,
                "wheel",
                "--quiet",
                "--wheel-dir",
                str(wheels),
                "-c",
                str(scratch / "constraints.txt"),
                f"{wheels / a4c_wheel.name}[{','.join(EXTRAS)}]",
            ]
        )
        pins = [pin(w.name, file_sha256(w)) for w in sorted(wheels.glob("*.whl"))]
        (root / "requirements.txt").write_text(requirements(pins))
        for extra in EXTRAS:
            needed = _resolved(pip, wheels, f"a4c[{extra}]=={version}")
            (root / f"requirements-{extra}.txt").write_text(requirements(pins, extras=(extra,), only=needed))
        units = root / "units"
        units.mkdir()
        for unit in sorted((REPO / "packaging" / "systemd").glob("*.service")):
            shutil.copy2(unit, units / unit.name)
        (root / "VERSION").write_text(f"{version}\n")
        files = sorted(p for p in root.rglob("*") if p.is_file())
        (root / "SHA256SUMS").write_text(sha256sums({str(p.relative_to(root)): file_sha256(p) for p in files}))

        dest.mkdir(parents=True, exist_ok=True)
        tarball = dest / f"{name}.tar.gz"
        partial = dest / f".{name}.tar.gz.partial"
        with tarfile.open(partial, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for path in [root, *sorted(root.rglob("*"))]:
                tar.add(path, arcname=str(path.relative_to(scratch)), recursive=False, filter=_tar_filter)
        os.replace(partial, tarball)
    (dest / f"{tarball.name}.sha256").write_text(sha256sums({tarball.name: file_sha256(tarball)}))
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dest", type=pathlib.Path, default=REPO / "dist" / "release", help="directory for the bundles (default: dist/release)")
    parser.add_argument("--version", help="release the tree under this version instead of pyproject.toml's")
    parser.add_argument(
        "--python", action="append", choices=[f"3.{m}" for m in SUPPORTED], help="only this Python (repeatable; default: every supported one found)"
    )
    args = parser.parse_args(argv)

    version = args.version or project_version((REPO / "pyproject.toml").read_text())
    found = interpreters([int(p.split(".")[1]) for p in args.python] if args.python else list(SUPPORTED))
    if not found:
        print("release: no supported Python found", file=sys.stderr)
        return 1
    freeze = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"])
    try:
        with tempfile.TemporaryDirectory(prefix="a4c-release-wheel-") as built:
            wheel = build_a4c_wheel(pathlib.Path(built), args.version)
            for minor, python in sorted(found.items()):
                tarball = build_bundle(args.dest, wheel, version, minor, python, frozen_constraints(freeze))
                print(tarball)
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
