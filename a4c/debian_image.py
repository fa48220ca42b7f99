"""``a4c debian-image``: a Debian base image made on this machine, for builds without Docker Hub.

The README's walkthrough builds ``FROM debian:12``. Where no registry is
reachable (an offline lab, a rate-limited CI), that pull fails and nothing
else can be shown. This makes the same thing locally: ``debootstrap`` a
minimal bookworm from the Debian mirror this machine's apt already uses, and
``docker import`` it with ``CMD ["bash"]`` (what Docker Hub's debian:12 runs)
into the daemon that ``a4c up`` uses. The root filesystem is kept as a
tarball named after its recipe, so a second run (or another state directory)
imports in seconds; a changed recipe builds afresh.

It is also the one home of "debootstrap into a cached tarball": the test
harness builds its systemd host image on top of it
(``tests/packaging/systemd_image.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
import typing

import click
import yaml

from a4c import statedir

if typing.TYPE_CHECKING:
    import docker

SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
DEFAULT_TAG = "debian:12"


class DebianImageError(RuntimeError):
    """The Debian image could not be made; the message says which step and why."""


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


def recipe(include: typing.Sequence[str] = ()) -> dict[str, typing.Any]:
    """What a root filesystem is made from; its hash names the cached tarball."""
    return {"suite": SUITE, "variant": "minbase", "include": list(include), "mirror": apt_mirror(), "arch": _arch()}


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


def rootfs_tarball(
    spec: dict[str, typing.Any], cache: pathlib.Path, *, flavour: str = "minbase", log: typing.Callable[[str], None] = print
) -> pathlib.Path:
    """The cached debootstrap tarball for ``spec`` under ``cache``, made first if missing (about a minute)."""
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"debian-{spec['suite']}-{flavour}-{recipe_key(spec)}.tar"
    with locked(cache / ".debootstrap.lock"):  # one at a time: it also clears leftovers
        if tarball.exists():
            return tarball
        if shutil.which("debootstrap") is None:
            raise DebianImageError("debootstrap is not installed (Debian package debootstrap; `make deps` installs it)")
        if os.geteuid() != 0:
            raise DebianImageError("debootstrap needs root (it creates device nodes and chroots)")
        for leftover in cache.glob("debootstrap-*"):  # a run killed while debootstrapping
            _unmount_under(leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        began = time.monotonic()
        work = pathlib.Path(tempfile.mkdtemp(prefix="debootstrap-", dir=cache))
        try:
            root = work / "root"
            argv = ["debootstrap", f"--variant={spec['variant']}", f"--arch={spec['arch']}"]
            if spec["include"]:
                argv.append(f"--include={','.join(spec['include'])}")
            argv += [spec["suite"], str(root), spec["mirror"]]
            log(f"debootstrap {spec['suite']} from {spec['mirror']} (about a minute) …")
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise DebianImageError(f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
            for deb in (root / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            partial = work / "rootfs.tar"
            subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True, timeout=300)
            os.replace(partial, tarball)
            for stale in cache.glob(f"debian-{spec['suite']}-{flavour}-*.tar"):
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


def import_image(client: docker.DockerClient, tarball: pathlib.Path, tag: str, command: typing.Sequence[str] = ("bash",)) -> str:
    """``docker import`` of ``tarball`` as ``tag`` with ``command`` as its CMD; returns the image id."""
    import docker  # the base install (the CLI alone) has no docker SDK; a4c up's install has

    repository, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    try:
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version, changes=[f"CMD {json.dumps(list(command))}"])
        image_id = client.images.get(tag).id
    except docker.errors.DockerException as exc:
        raise DebianImageError(f"importing {tarball} as {tag} failed: {exc}") from exc
    if image_id is None:
        raise DebianImageError(f"importing {tarball} as {tag}: the daemon reports no image id")
    return image_id


def docker_host_of(state_dir: pathlib.Path) -> str | None:
    """The Docker daemon the ``a4c up`` of ``state_dir`` gave its agent, if it has run."""
    try:
        config = yaml.safe_load((state_dir / "agent.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    return (config.get("docker") or {}).get("base_url")


def default_cache() -> pathlib.Path:
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "a4c"


@click.command("debian-image")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    envvar="A4C_STATE_DIR",
    show_envvar=True,
    default=statedir.DEFAULT,
    show_default=True,
    help="The a4c up whose Docker daemon gets the image (DOCKER_HOST wins when set); the same default as a4c up's.",
)
@click.option("--tag", default=DEFAULT_TAG, show_default=True, help="Name the image gets, so FROM lines find it.")
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help="Where the root filesystem tarball is kept [default: ~/.cache/a4c].",
)
def command(state_dir: pathlib.Path, tag: str, cache: pathlib.Path | None) -> None:
    """Make a Debian 12 base image here (debootstrap from apt's mirror), for builds without Docker Hub."""
    try:
        import docker
    except ImportError:
        raise click.ClickException("the docker SDK is missing: pip install 'a4c[all]' (what make up installs)") from None
    host = os.environ.get("DOCKER_HOST") or docker_host_of(state_dir)
    if host is None:
        raise click.ClickException(f"no Docker daemon known: start `a4c up --state-dir {state_dir}` once first, or set DOCKER_HOST")
    try:
        tarball = rootfs_tarball(recipe(), cache or default_cache(), log=click.echo)
        client = docker.DockerClient(base_url=host, timeout=300)
        try:
            image_id = import_image(client, tarball, tag)
        finally:
            client.close()
    except DebianImageError as exc:
        raise click.ClickException(str(exc)) from None
    except docker.errors.DockerException as exc:
        raise click.ClickException(f"Docker at {host}: {exc}") from None
    click.echo(f"{tag} is {image_id[:19]} in the Docker daemon at {host}")
