"""Recorded image builds a host's inventory no longer shows are forgotten."""

from __future__ import annotations

import datetime

import pytest

from controlplane.domain import host_images

NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)
SETTLE = datetime.timedelta(seconds=10)


def recorded(tag: str = "a4c/dev:latest", docker_id: str = "sha256:aa", age: float = 60, image: str = "img-1") -> host_images.Recorded:
    return host_images.Recorded(image_id=image, tag=tag, docker_image_id=docker_id, built_at=NOW - datetime.timedelta(seconds=age))


@pytest.mark.parametrize(
    ("case", "row", "present", "gone"),
    [
        ("tag still there", recorded(), [host_images.Present("sha256:aa", ("a4c/dev:latest",))], False),
        ("tag on a newer build of it", recorded(), [host_images.Present("sha256:bb", ("a4c/dev:latest",))], False),
        ("removed by cleanup", recorded(), [], True),
        ("only an untagged copy left", recorded(), [host_images.Present("sha256:aa", ())], True),
        ("another image's tag", recorded(), [host_images.Present("sha256:cc", ("a4c/other:latest",))], True),
        ("built just before the inventory: not trusted yet", recorded(age=5), [], False),
        ("no tag recorded: the Docker id decides, present", recorded(tag=""), [host_images.Present("sha256:aa", ())], False),
        ("no tag recorded: the Docker id decides, gone", recorded(tag=""), [host_images.Present("sha256:bb", ())], True),
    ],
)
def test_forgotten(case, row, present, gone):
    assert host_images.forgotten([row], present, NOW, settle=SETTLE) == ([row] if gone else []), case


def test_several_rows_come_sorted_by_image():
    rows = [recorded(image="b"), recorded(image="a", tag="a4c/a:latest"), recorded(image="c", tag="a4c/c:latest")]
    present = [host_images.Present("sha256:cc", ("a4c/c:latest",))]
    assert [r.image_id for r in host_images.forgotten(rows, present, NOW, settle=SETTLE)] == ["a", "b"]
