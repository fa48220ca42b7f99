"""The test wheelhouse cache (tests/packaging/wheels.py) never serves an empty directory.

Docker creates a missing bind-mount source as an empty directory; if that
path is a wheelhouse's, every later rollout test installed from nothing and
failed with "No matching distribution found".
"""

from __future__ import annotations

import os
import pathlib
import time

from tests.packaging import wheels


def test_an_empty_or_half_written_directory_is_not_a_wheelhouse(tmp_path: pathlib.Path) -> None:
    house = tmp_path / "wheelhouse-agent-0123456789ab"
    house.mkdir()
    assert not wheels._complete(house), "an empty directory, as Docker leaves it"
    (house / "pydantic-2.9.0-py3-none-any.whl").write_bytes(b"")
    assert not wheels._complete(house), "wheels without constraints.txt"
    (house / "constraints.txt").write_text("pydantic==2.9.0\n")
    assert wheels._complete(house)


def test_only_old_wheelhouses_of_other_dependency_sets_are_removed(tmp_path: pathlib.Path) -> None:
    keep, recent, old, other_extra = (tmp_path / f"wheelhouse-{name}" for name in ("agent-k", "agent-r", "agent-o", "controlplane-o"))
    for path in (keep, recent, old, other_extra):
        path.mkdir()
    long_ago = time.time() - wheels.STALE_AFTER_S - 60
    for path in (keep, old, other_extra):
        os.utime(path, (long_ago, long_ago))
    wheels._remove_stale(tmp_path, "agent", keep)
    assert keep.is_dir(), "the one just built"
    assert recent.is_dir(), "another checkout may be mounting it right now"
    assert not old.exists()
    assert other_extra.is_dir(), "another extra's wheelhouse"
