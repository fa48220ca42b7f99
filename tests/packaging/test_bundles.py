"""One run builds each release bundle once and hands every caller its own copy (tests/packaging/bundles.py)."""

from __future__ import annotations

import pathlib

import pytest

from tests.harness import shared_servers
from tests.packaging import bundles


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> list[str | None]:
    """Stands in for packaging/release.py (pure logic under test: who builds, who copies); records each build."""
    made: list[str | None] = []

    def fake_build(dest: pathlib.Path, version: str | None) -> pathlib.Path:
        made.append(version)
        dest.mkdir(parents=True, exist_ok=True)
        tarball = dest / f"a4c-{version or '0.1.0'}-py311.tar.gz"
        tarball.write_bytes(f"bundle {version}".encode())
        tarball.with_name(tarball.name + ".sha256").write_text(f"sum  {tarball.name}\n")
        return tarball

    monkeypatch.setattr(bundles, "_build", fake_build)
    monkeypatch.setenv(shared_servers.ENV, str(tmp_path / "shared"))
    return made


def test_under_a_run_each_version_is_built_once_and_every_caller_gets_its_own_copy(builds, tmp_path: pathlib.Path) -> None:
    first = bundles.build(tmp_path / "one")
    second = bundles.build(tmp_path / "two")
    upgrade = bundles.build(tmp_path / "three", version="0.1.1")
    again = bundles.build(tmp_path / "four", version="0.1.1")
    assert builds == [None, "0.1.1"]
    assert first.parent == tmp_path / "one" and second.parent == tmp_path / "two"
    assert first.read_bytes() == second.read_bytes() == b"bundle None"
    assert upgrade.read_bytes() == again.read_bytes() == b"bundle 0.1.1"
    assert (tmp_path / "two" / f"{second.name}.sha256").is_file()
    # A copy, not the shared file: a test that tampers with its bundle touches no other test's.
    second.write_bytes(b"swapped")
    assert bundles.build(tmp_path / "five").read_bytes() == b"bundle None"


def test_outside_a_run_every_call_builds(builds, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.delenv(shared_servers.ENV)
    bundles.build(tmp_path / "one")
    bundles.build(tmp_path / "two")
    assert builds == [None, None]
