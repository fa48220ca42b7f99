"""Whether a host can cap a workspace's disk: from `docker info` and the mount of its data root (agent/domain/disk_limits.py)."""

from __future__ import annotations

import typing

import pytest

from agent.domain import disk_limits as d

MOUNTS = """\
overlay / overlay rw,relatime,lowerdir=/l,upperdir=/u,workdir=/w 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 /var/lib ext4 rw,relatime 0 0
/dev/sdb1 /var/lib/docker xfs rw,relatime,attr2,inode64,logbufs=8,logbsize=32k,prjquota 0 0
/dev/sdc1 /srv/docker xfs rw,relatime,attr2,inode64,noquota 0 0
/dev/sdd1 /srv/my\\040docker xfs rw,pquota 0 0
/dev/loop0 /srv/docker/nested ext4 rw 0 0
"""


def info(driver: str, root: str = "/var/lib/docker", backing: str | None = None) -> dict:
    status = [["Backing Filesystem", backing], ["Supports d_type", "true"]] if backing else []
    return {"Driver": driver, "DockerRootDir": root, "DriverStatus": status}


@pytest.mark.parametrize(
    ("path", "mountpoint", "fstype", "quota"),
    [
        ("/var/lib/docker", "/var/lib/docker", "xfs", True),
        ("/var/lib/docker/overlay2", "/var/lib/docker", "xfs", True),
        ("/var/lib/dockerx", "/var/lib", "ext4", False),  # a prefix of the name, not of the path
        ("/srv/docker", "/srv/docker", "xfs", False),
        ("/srv/docker/nested/x", "/srv/docker/nested", "ext4", False),
        ("/srv/my docker/data", "/srv/my docker", "xfs", True),  # \040 is a space
        ("/home/x", "/", "overlay", False),
    ],
)
def test_the_mount_holding_a_path_is_the_longest_mount_point_above_it(path: str, mountpoint: str, fstype: str, quota: bool) -> None:
    mount = d.mount_of(path, MOUNTS)
    assert mount is not None
    assert (mount.mountpoint, mount.fstype, bool(mount.options & d.PROJECT_QUOTA)) == (mountpoint, fstype, quota)


def test_no_mount_table_means_no_mount() -> None:
    assert d.mount_of("/var/lib/docker", "") is None


XFS_PQ = d.Mount("/var/lib/docker", "xfs", frozenset({"rw", "prjquota"}))
XFS_PQUOTA = d.Mount("/var/lib/docker", "xfs", frozenset({"rw", "pquota"}))
XFS_NOQ = d.Mount("/var/lib/docker", "xfs", frozenset({"rw", "noquota"}))
EXT4 = d.Mount("/", "ext4", frozenset({"rw", "relatime"}))


@pytest.mark.parametrize(
    ("docker_info", "mount", "enforced", "says"),
    [
        (info("overlay2", backing="xfs"), XFS_PQ, True, "overlay2 on xfs with prjquota"),
        (info("overlay2", backing="xfs"), XFS_PQUOTA, True, "capped at its disk_gb"),
        (info("overlay2", backing="xfs"), XFS_NOQ, False, "overlay2 on xfs mounted without prjquota"),
        (info("overlay2", backing="xfs"), None, False, "cannot see how /var/lib/docker is mounted"),
        (
            info("overlay2", backing="extfs"),
            EXT4,
            False,
            "overlay2 on extfs: Docker cannot cap a container's disk there; it needs xfs mounted with prjquota",
        ),
        # No Backing Filesystem in DriverStatus: the mount says what it is.
        (info("overlay2"), EXT4, False, "overlay2 on ext4: Docker cannot cap"),
        (info("overlay2", backing="xfs"), EXT4, False, "mounted without prjquota"),
        (info("btrfs"), None, True, "btrfs"),
        (info("zfs"), None, True, "zfs"),
        (info("vfs"), EXT4, False, "vfs storage driver: Docker cannot cap a container's disk there; it needs overlay2 on xfs"),
        (info("overlayfs"), XFS_PQ, False, "overlayfs storage driver"),  # the containerd snapshotter ignores the size
        ({}, None, False, "unknown storage driver"),
    ],
)
def test_a_host_can_enforce_only_on_overlay2_over_xfs_with_prjquota_btrfs_or_zfs(
    docker_info: dict, mount: d.Mount | None, enforced: bool, says: str
) -> None:
    able = d.capability(docker_info, mount)
    assert able.enforced is enforced
    assert says in able.reason


ABLE = d.Decision(True, "overlay2 on xfs with prjquota")
UNABLE = d.Decision(False, "overlay2 on extfs: Docker cannot cap a container's disk there")


@pytest.mark.parametrize(
    ("setting", "able", "enforced", "asks", "refused"),
    [
        ("auto", ABLE, True, True, False),
        ("auto", UNABLE, False, False, False),
        ("true", ABLE, True, True, False),
        ("true", UNABLE, False, True, True),
        ("false", ABLE, False, False, False),
        ("false", UNABLE, False, False, False),
    ],
)
def test_the_setting_auto_follows_the_host_true_demands_it_false_turns_it_off(
    setting: d.Setting, able: d.Decision, enforced: bool, asks: bool, refused: bool
) -> None:
    decision = d.decide(setting, able)
    assert decision.enforced is enforced
    assert d.asks_size(setting, decision) is asks
    error = d.refusal(setting, able)
    assert (error is not None) is refused
    if error:
        assert "cannot enforce disk limits: overlay2 on extfs" in error and "auto" in error
    if setting == "false":
        assert decision.reason.startswith("docker.enforce_disk_limit is false")


def test_before_docker_answered_only_true_asks_for_the_size() -> None:
    assert d.asks_size("true", None) and not d.asks_size("auto", None) and not d.asks_size("false", None)


@pytest.mark.parametrize(("given", "read"), [(None, "auto"), (True, "true"), (False, "false"), ("auto", "auto"), ("False", "false")])
def test_the_setting_still_accepts_the_old_booleans(given: object, read: str) -> None:
    from agent import settings

    fields: dict[str, typing.Any] = {} if given is None else {"enforce_disk_limit": given}
    assert settings.DockerSettings(**fields).enforce_disk_limit == read


def test_the_setting_refuses_anything_else() -> None:
    import pydantic

    from agent import settings

    with pytest.raises(pydantic.ValidationError):
        settings.DockerSettings(enforce_disk_limit="sometimes")  # type: ignore[arg-type]  # the invalid value is the test
