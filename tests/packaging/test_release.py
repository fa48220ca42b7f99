"""`make release`'s bundle (packaging/release.py): its contents, its checksums, and an install that needs no index.

The bundle is built once for this virtualenv's Python, under the next
version (``--version``), as ``make release`` runs the script. The install runs
``pip install --no-index --find-links wheels --require-hashes -r
requirements.txt`` into a fresh virtualenv in a network namespace of its own
(``unshare --net``: loopback only, and down), with ``PIP_INDEX_URL`` at a
closed port besides: pip cannot reach an index, so it succeeds only if the
bundle holds everything.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tomllib

import pytest

from tests.packaging import wheels

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "release.py"
MINOR = sys.version_info.minor
_LINE = re.compile(r"^(?P<name>[a-z0-9-]+)(?:\[(?P<extras>[a-z,]+)\])?==(?P<version>\S+) --hash=sha256:(?P<sha>[0-9a-f]{64})$")


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def version() -> str:
    return wheels.next_version(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory, version: str) -> pathlib.Path:
    dest = tmp_path_factory.mktemp("release")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dest", str(dest), "--version", version, "--python", f"3.{MINOR}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == [str(dest / f"a4c-{version}-py3{MINOR}.tar.gz")]
    return dest


@pytest.fixture(scope="module")
def bundle(dist: pathlib.Path, version: str, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The unpacked bundle directory."""
    out = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(dist / f"a4c-{version}-py3{MINOR}.tar.gz") as tar:
        tar.extractall(out, filter="data")
    return out / f"a4c-{version}-py3{MINOR}"


def test_the_tarball_has_one_directory_and_a_checksum_file_sha256sum_accepts(dist: pathlib.Path, version: str) -> None:
    name = f"a4c-{version}-py3{MINOR}"
    assert sorted(p.name for p in dist.iterdir()) == [f"{name}.tar.gz", f"{name}.tar.gz.sha256"]
    assert (dist / f"{name}.tar.gz.sha256").read_text() == f"{_sha256(dist / f'{name}.tar.gz')}  {name}.tar.gz\n"
    check = subprocess.run(["sha256sum", "--check", "--strict", f"{name}.tar.gz.sha256"], cwd=dist, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    with tarfile.open(dist / f"{name}.tar.gz") as tar:
        members = tar.getmembers()
    assert {m.name.split("/")[0] for m in members} == {name}
    assert all(m.uid == 0 and m.gid == 0 and (m.isdir() or m.isfile()) for m in members), "plain files and directories owned by root"


def test_the_bundle_holds_wheels_requirements_units_version_and_sums(bundle: pathlib.Path, version: str) -> None:
    assert sorted(p.name for p in bundle.iterdir()) == [
        "SHA256SUMS",
        "VERSION",
        "requirements-agent.txt",
        "requirements-controlplane.txt",
        "requirements.txt",
        "units",
        "wheels",
    ]
    assert (bundle / "VERSION").read_text() == f"{version}\n"
    units = REPO / "packaging" / "systemd"
    assert sorted(p.name for p in (bundle / "units").iterdir()) == sorted(p.name for p in units.glob("*.service"))
    for unit in (bundle / "units").iterdir():
        assert unit.read_bytes() == (units / unit.name).read_bytes(), unit.name
    assert [w.name for w in (bundle / "wheels").glob("a4c-*.whl")] == [f"a4c-{version}-py3-none-any.whl"]


def test_sha256sums_lists_every_other_file_with_its_hash(bundle: pathlib.Path) -> None:
    listed = {path: digest for digest, path in (line.split("  ", 1) for line in (bundle / "SHA256SUMS").read_text().splitlines())}
    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(listed) == files
    assert all(listed[path] == _sha256(bundle / path) for path in files)
    check = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_requirements_pin_and_hash_exactly_the_wheels(bundle: pathlib.Path, version: str) -> None:
    lines = (bundle / "requirements.txt").read_text().splitlines()
    parsed = [_LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if m is None]
    by_sha = {m["sha"]: m for m in parsed if m}
    wheel_files = sorted((bundle / "wheels").glob("*.whl"))
    assert len(by_sha) == len(lines) == len(wheel_files)
    for wheel in wheel_files:
        match = by_sha[_sha256(wheel)]
        assert wheel.name.split("-")[1] == match["version"], wheel.name
        assert re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower() == match["name"], wheel.name
    a4c = next(m for m in parsed if m and m["name"] == "a4c")
    assert (a4c["extras"], a4c["version"]) == ("agent,controlplane", version)
    # Every dependency of both deployables is there.
    names = {m["name"] for m in parsed if m}
    assert {"aiokafka", "docker", "psutil", "sqlalchemy", "asyncpg", "alembic", "elasticsearch"} <= names


def test_the_agent_requirements_are_a_subset_without_the_control_planes_libraries(bundle: pathlib.Path) -> None:
    everything = set((bundle / "requirements.txt").read_text().splitlines())
    agent = (bundle / "requirements-agent.txt").read_text().splitlines()
    names = {line.split("==")[0] for line in agent}
    assert "a4c[agent]" in names and {"docker", "psutil", "aiokafka"} <= names
    assert not names & {"sqlalchemy", "asyncpg", "alembic", "elasticsearch"}
    assert {line for line in agent if not line.startswith("a4c")} <= everything


def _offline(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``argv`` in a network namespace of its own (root), so no index is reachable whatever pip is told."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False).returncode != 0:
        pytest.fail("unshare --net is not available (util-linux, as root): cannot prove the install is offline")
    return subprocess.run(["unshare", "--net", *argv], capture_output=True, text=True, env=env, timeout=600, check=False)


def test_a_fresh_virtualenv_installs_the_bundle_with_no_index_and_runs_its_version(
    bundle: pathlib.Path, version: str, tmp_path: pathlib.Path
) -> None:
    # PYTHONPATH would put this checkout before the installed package.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env |= {"PIP_INDEX_URL": f"http://127.0.0.1:{_closed_port()}/simple", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, env=env)
    install = _offline(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--no-index",
            "--find-links",
            str(bundle / "wheels"),
            "--require-hashes",
            "-r",
            str(bundle / "requirements.txt"),
        ],
        env,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    for daemon in ("a4c-agent", "a4c-controlplane"):
        assert (venv / "bin" / daemon).exists(), daemon
    ran = subprocess.run([str(venv / "bin" / "a4c-agent"), "version"], capture_output=True, text=True, env=env, check=True)
    assert ran.stdout.strip() == version


def test_a_tampered_wheel_is_refused(bundle: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """--require-hashes is what makes the pins binding: a changed wheel fails the install."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    victim = next((copy / "wheels").glob("pyyaml-*.whl"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))} | {"PIP_NO_CACHE_DIR": "1"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, env=env)
    install = _offline(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--no-index",
            "--find-links",
            str(copy / "wheels"),
            "--require-hashes",
            "-r",
            str(copy / "requirements.txt"),
        ],
        env,
    )
    assert install.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in install.stdout + install.stderr
