"""A Debian image with systemd as PID 1: the "server" the Ansible role is rolled out to.

Built once per machine and recipe, then reused:

1. ``debootstrap --variant=minbase --include=...`` from the mirror this machine's
   apt uses (about a minute), packed as a tarball in the cache directory under
   a name that is the hash of the recipe, so a changed recipe builds afresh and
   an unchanged one is never rebuilt (a4c/debian_image.py, which ``a4c
   debian-image`` uses too). Concurrent runs serialise on a lock file.
2. Every run imports that tarball into the run's Docker daemon (``docker import``;
   the harness's private daemon starts empty) and adds a thin layer with
   ``docker build`` (offline: no ``FROM`` a registry image) that makes it boot
   quietly in a container.

The cache directory is ``$A4C_TEST_CACHE``, else ``/var/cache/a4c-test`` when
writable (root), else ``~/.cache/a4c``.
"""

from __future__ import annotations

import io
import os
import pathlib
import typing

import docker

from a4c import debian_image

INCLUDE = ("systemd", "systemd-sysv", "python3", "python3-venv", "python3-pip", "dbus", "openssh-server", "sudo", "git")
REPOSITORY = "a4c-test/systemd-host"

# The thin layer: nothing here needs the network. Units that only make sense on
# real hardware are masked so that `systemctl is-system-running` can say
# "running" instead of "degraded".
_DOCKERFILE = """\
FROM {base}
RUN systemctl mask systemd-firstboot.service systemd-udevd.service systemd-udevd-control.socket \\
        systemd-udevd-kernel.socket getty@tty1.service console-getty.service sys-kernel-config.mount \\
        systemd-modules-load.service 2>/dev/null; \\
    rm -f /etc/machine-id /var/lib/dbus/machine-id && touch /etc/machine-id; \\
    mkdir -p /root/.ssh && chmod 0700 /root/.ssh
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
"""


class SystemdImageError(RuntimeError):
    """The systemd host image could not be built."""


def cache_dir() -> pathlib.Path:
    explicit = os.environ.get("A4C_TEST_CACHE")
    if explicit:
        path = pathlib.Path(explicit)
    elif os.geteuid() == 0:
        path = pathlib.Path("/var/cache/a4c-test")
    else:
        path = pathlib.Path.home() / ".cache" / "a4c"
    path.mkdir(parents=True, exist_ok=True)
    return path


def recipe() -> dict[str, typing.Any]:
    return debian_image.recipe(INCLUDE)


locked = debian_image.locked  # one file lock for the cache (wheels.py uses it too)


def rootfs_tarball(spec: dict[str, typing.Any] | None = None, *, log: typing.Callable[[str], None] = print) -> pathlib.Path:
    """The cached debootstrap tarball for ``spec``, built first if missing (a4c/debian_image.py)."""
    try:
        return debian_image.rootfs_tarball(spec or recipe(), cache_dir(), flavour="systemd", log=log)
    except debian_image.DebianImageError as exc:
        raise SystemdImageError(str(exc)) from exc


def build(client: docker.DockerClient, *, log: typing.Callable[[str], None] = print) -> str:
    """Tag of the systemd host image in the daemon of ``client``, importing and building it when missing."""
    spec = recipe()
    key = debian_image.recipe_key({**spec, "layer": _DOCKERFILE})
    tag = f"{REPOSITORY}:{key}"
    if _exists(client, tag):
        return tag
    tarball = rootfs_tarball(spec, log=log)
    base = f"{REPOSITORY}-base:{debian_image.recipe_key(spec)}"
    try:
        if not _exists(client, base):
            repository, _, version = base.rpartition(":")
            client.api.import_image_from_file(str(tarball), repository=repository, tag=version)
        client.images.build(fileobj=io.BytesIO(_DOCKERFILE.format(base=base).encode()), tag=tag, rm=True, forcerm=True)
    except docker.errors.DockerException as error:
        raise SystemdImageError(f"building {tag} from {tarball} failed: {error}") from error
    return tag


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
