"""The pure decisions behind image updates and deletes (controlplane/domain/image_life.py)."""

from __future__ import annotations

import pytest

from controlplane.domain import image_life

INLINE = image_life.Source("FROM busybox", None, None, None)
GIT = image_life.Source(None, "https://h/r.git", "main", "img")


@pytest.mark.parametrize(
    ("current", "change", "expected"),
    [
        (INLINE, {"dockerfile": "FROM x"}, image_life.Source("FROM x", None, None, None)),
        (INLINE, {"git_url": "https://h/s.git"}, image_life.Source(None, "https://h/s.git", "HEAD", ".")),
        (GIT, {"git_url": "https://h/s.git"}, image_life.Source(None, "https://h/s.git", "main", "img")),
        (GIT, {"git_ref": "v2"}, image_life.Source(None, "https://h/r.git", "v2", "img")),
        (GIT, {"dockerfile": "FROM x"}, image_life.Source("FROM x", None, None, None)),
        (GIT, {}, GIT),
    ],
)
def test_an_update_keeps_exactly_one_source(current, change, expected):
    assert image_life.updated_source(current, change) == expected


@pytest.mark.parametrize(
    ("current", "change", "field"),
    [
        (INLINE, {"git_ref": "v1"}, "git_ref"),
        (INLINE, {"git_path": "x"}, "git_path"),
        (GIT, {"dockerfile": "FROM x", "git_ref": "v"}, "git_ref"),
        (GIT, {"dockerfile": "FROM x", "git_url": "https://h/r.git"}, "dockerfile"),
    ],
)
def test_a_change_that_means_nothing_names_its_field(current, change, field):
    with pytest.raises(image_life.Unchangeable) as caught:
        image_life.updated_source(current, change)
    assert caught.value.field == field


def test_a_delete_is_refused_naming_the_callers_workspaces_and_counting_the_others():
    assert image_life.deletion_refusal([], 0, []) is None
    said = image_life.deletion_refusal(["dev", "ci"], 2, [])
    assert said == "it is used by workspaces dev, ci and 2 workspaces of other users; delete those first"
    assert "1 workspace of other users" in image_life.deletion_refusal([], 1, [])
    many = image_life.deletion_refusal([f"w{n}" for n in range(12)], 0, ["job-1"])
    assert "w9 and 2 more" in many and "build job-1 still in flight" in many and "a4c jobs cancel" in many
