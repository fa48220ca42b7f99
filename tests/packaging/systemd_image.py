"""A Debian image with systemd as PID 1: the "server" the Ansible role is rolled out to.

Built once per machine and recipe, then reused:

1. ``debootstrap --variant=minbase --include=...`` from the mirror this machine's
   apt uses (about a minute), packed as a tarball in the cache directory under
   a name that is the hash of the recipe, so a changed recipe builds afresh and
   an unchanged one is never rebuilt. Concurrent runs serialise on a lock file.
2. Every run imports that tarball into the run's Docker daemon (``docker import``;
   the harness's private daemon starts empty) and adds a thin layer with
   ``docker build`` (offline: no ``FROM`` a registry image) that makes it boot
   quietly in a container.

The cache directory is ``$A4C_TEST_CACHE``, else ``/var/cache/a4c-test`` when
writable (root), else ``~/.cache/a4c``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
import typing

import docker

SUITE = "bookworm"
INCLUDE = ("systemd", "systemd-sysv", "python3", "python3-venv", "python3-pip", "dbus", "openssh-server", "sudo", "git")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
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


def apt_mirror(etc: pathlib.Path = pathlib.Path("/etc/apt")) -> str:
    """The Debian archive this machine's apt uses (deb822 ``URIs:`` or one-line ``deb`` entries)."""
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^\s*URIs:\s*(\S+)", text, re.M) + re.findall(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return FALLBACK_MIRROR


def recipe() -> dict[str, typing.Any]:
    return {"suite": SUITE, "variant": "minbase", "include": list(INCLUDE), "mirror": apt_mirror(), "arch": _arch()}


def recipe_key(spec: dict[str, typing.Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


@contextlib.contextmanager
def locked(path: pathlib.Path) -> typing.Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rootfs_tarball(spec: dict[str, typing.Any] | None = None, *, log: typing.Callable[[str], None] = print) -> pathlib.Path:
    """The cached debootstrap tarball for ``spec``, built first if missing."""
    spec = spec or recipe()
    key = recipe_key(spec)
    cache = cache_dir()
    tarball = cache / f"debian-{spec['suite']}-systemd-{key}.tar"
    with locked(cache / ".debootstrap.lock"):  # one at a time: it also clears leftovers
        if tarball.exists():
            return tarball
        if shutil.which("debootstrap") is None:
            raise SystemdImageError("debootstrap is not installed (Debian package debootstrap; `make deps` installs it)")
        for leftover in cache.glob("debootstrap-*"):  # a run killed while debootstrapping
            _unmount_under(leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        began = time.monotonic()
        work = pathlib.Path(tempfile.mkdtemp(prefix="debootstrap-", dir=cache))
        try:
            root = work / "root"
            argv = [
                "debootstrap", f"--variant={spec['variant']}", f"--arch={spec['arch']}",
                f"--include={','.join(spec['include'])}", spec["suite"], str(root), spec["mirror"],
            ]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise SystemdImageError(f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
            (root / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
            for deb in (root / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            partial = work / "rootfs.tar"
            subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True, timeout=300)
            os.replace(partial, tarball)
            for stale in cache.glob(f"debian-{spec['suite']}-systemd-*.tar"):
                if stale != tarball:
                    stale.unlink(missing_ok=True)  # another recipe's: keep the cache small
        finally:
            _unmount_under(work)  # debootstrap mounts /proc and /sys in the tree; never delete through them
            shutil.rmtree(work, ignore_errors=True)
        log(f"debootstrapped {spec['suite']} into {tarball} in {time.monotonic() - began:.0f} s")
        return tarball


def _unmount_under(path: pathlib.Path) -> None:
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in pathlib.Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


def build(client: docker.DockerClient, *, log: typing.Callable[[str], None] = print) -> str:
    """Tag of the systemd host image in the daemon of ``client``, importing and building it when missing."""
    spec = recipe()
    key = recipe_key({**spec, "layer": _DOCKERFILE})
    tag = f"{REPOSITORY}:{key}"
    if _exists(client, tag):
        return tag
    tarball = rootfs_tarball(spec, log=log)
    base = f"{REPOSITORY}-base:{recipe_key(spec)}"
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

