"""The offline base image: Debian's static busybox in an otherwise empty root fs.

No registry is reachable from the test machines, so nothing can be pulled;
this image is imported from a tar built here (as ``docker import`` would) and
``docker build`` with ``FROM`` it works offline. Importing takes well under a
second, so every run builds it afresh rather than trusting a cached copy.
"""

from __future__ import annotations

import io
import pathlib
import struct
import subprocess
import tarfile

import docker

TAG = "a4c-test/busybox:latest"

# busybox-static installs /bin/busybox; a dynamically linked busybox (package
# busybox) would not run in a root fs without a libc.
_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

_ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hostname": "a4c-test\n",
}


class BaseImageError(RuntimeError):
    """The base image could not be built."""


def is_static_elf(path: pathlib.Path) -> bool:
    """A 64-bit little-endian ELF executable without a PT_INTERP program header (no dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return False
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


def find_static_busybox() -> pathlib.Path:
    for candidate in map(pathlib.Path, _CANDIDATES):
        if candidate.is_file() and is_static_elf(candidate):
            return candidate
    raise BaseImageError("no statically linked busybox found (install Debian's busybox-static; `make deps` does)")


def rootfs_tar(busybox: pathlib.Path) -> bytes:
    """A root fs: /bin/busybox, a symlink per applet, /etc basics and the usual empty directories."""
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in [
            ("bin", 0o755),
            ("etc", 0o755),
            ("root", 0o700),
            ("tmp", 0o1777),
            ("var", 0o755),
            ("var/tmp", 0o1777),
            ("proc", 0o555),
            ("sys", 0o555),
            ("dev", 0o755),
            ("usr", 0o755),
            ("usr/bin", 0o755),
            ("sbin", 0o755),
        ]:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for name, text in _ETC.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build(client: docker.DockerClient, tag: str = TAG) -> str:
    """Import the base image into the daemon under ``tag``; returns the tag."""
    repository, _, version = tag.rpartition(":")
    try:
        client.api.import_image_from_data(
            rootfs_tar(find_static_busybox()),
            repository=repository,
            tag=version,
            changes=['CMD ["sh"]', "ENV PATH=/bin:/usr/bin:/sbin"],
        )
        client.images.get(tag)
    except docker.errors.DockerException as error:
        raise BaseImageError(f"importing {tag} failed: {error}") from error
    return tag
