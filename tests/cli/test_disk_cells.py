"""The disk column of `a4c workspaces list` and the disk limits of `a4c hosts`: reserved, used, enforced, over."""

from __future__ import annotations

import pytest

from a4c.commands import hosts, workspaces

GiB = 1024**3


@pytest.mark.parametrize(
    ("disk", "shown"),
    [
        ({"reserved_bytes": 20 * GiB, "used_bytes": int(1.2 * GiB), "enforced": True, "over": False}, "1.2G of 20G"),
        ({"reserved_bytes": 20 * GiB, "used_bytes": None, "enforced": False, "over": None}, "20G reserved, not enforced"),
        ({"reserved_bytes": 20 * GiB, "used_bytes": 3 * GiB, "enforced": False, "over": False}, "20G reserved, not enforced (3.0G used)"),
        ({"reserved_bytes": 20 * GiB, "used_bytes": 25 * GiB, "enforced": False, "over": True}, "20G reserved, not enforced (25.0G used), over"),
        ({"reserved_bytes": 20 * GiB, "used_bytes": None, "enforced": None, "over": None}, "20G"),  # its host has not said
        (None, "20G"),  # a control plane older than the disk field
    ],
)
def test_the_disk_cell_says_whether_the_reservation_is_enforced(disk: dict | None, shown: str) -> None:
    assert workspaces.disk({"disk_gb": 20, "disk": disk}) == shown


@pytest.mark.parametrize(("enforced", "shown"), [(True, "enforced"), (False, "not enforced"), (None, "unknown")])
def test_a_host_says_whether_it_enforces(enforced: bool | None, shown: str) -> None:
    assert hosts.disk_limits({"enforced": enforced}) == shown
