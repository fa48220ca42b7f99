"""Reading Docker's list and disk-usage answers."""

from __future__ import annotations

import typing

import pytest

from agent.domain import inventory as inv

OWN = {"a4c.managed": "true", "a4c.host": "h1", "a4c.workspace": "w1", "a4c.job": "j1"}


def test_the_inventory_lists_only_this_hosts_containers_and_images() -> None:
    rows: list[dict[str, typing.Any]] = [
        {
            "Id": "c1",
            "Names": ["/a4c-w1"],
            "Image": "img:1",
            "State": "running",
            "Created": 1_700_000_000,
            "Labels": OWN,
            "Ports": [{"IP": "127.0.0.1", "PrivatePort": 22, "PublicPort": 30022, "Type": "tcp"}],
        },
        {"Id": "c2", "Names": ["/a4c-w2"], "Image": "img:1", "State": "running", "Labels": {**OWN, "a4c.host": "h2"}},
    ]
    images: list[dict[str, typing.Any]] = [
        {"Id": "i1", "RepoTags": ["a:1", "<none>:<none>"], "Labels": {**OWN, "a4c.image": "img-a"}, "Size": 42},
        {"Id": "i2", "RepoTags": ["b:1"], "Labels": None, "Size": 1},
    ]
    report = inv.inventory(rows, images, "h1")
    assert [c.container_id for c in report.containers] == ["c1"]
    c1 = report.containers[0]
    assert (c1.workspace_id, c1.job_id, c1.name, c1.state) == ("w1", "j1", "a4c-w1", "running")
    assert c1.created_at == "2023-11-14T22:13:20+00:00" and c1.ports[0].host_port == 30022
    assert [(i.image_id, i.tags, i.a4c_image, i.size_bytes) for i in report.images] == [("i1", ["a:1"], "img-a", 42)]


def test_docker_disk_figures_and_per_workspace_writable_layers() -> None:
    df = {
        "LayersSize": 1000,
        "Containers": [{"SizeRw": 10, "Labels": OWN}, {"SizeRw": 5, "Labels": {}}, {"Labels": {**OWN, "a4c.workspace": "w3"}}],
        "Volumes": [{"UsageData": {"Size": 7}}, {"UsageData": {"Size": -1}}],
        "BuildCache": [{"Size": 3, "InUse": False}, {"Size": 4, "InUse": True}],
    }
    assert inv.docker_figures(df) == {"images": 1000, "containers": 15, "volumes": 7, "build_cache": 7}
    assert inv.unused_build_cache(df) == 3
    assert inv.workspace_sizes(df, "h1") == {"w1": 10, "w3": 0}


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000.123456789),
        ("2023-11-14T23:13:20.5+01:00", 1_700_000_000.5),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_docker_timestamps_parse_to_epoch_seconds(text: str, epoch: float | None) -> None:
    got = inv.parse_time(text)
    assert got == (pytest.approx(epoch) if epoch is not None else None)
