"""Realistic generated jobs: skewed statuses, kinds and hosts; error texts and log tails like real failures.

Used by ``bench/search`` (a million rows, loaded with COPY) and by the search
tests (a few hundred). Deterministic for a given seed, so a failing test sees
the same data again.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import typing
import uuid

BASE = datetime.datetime(2025, 3, 1, tzinfo=datetime.UTC)

USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
USER_WEIGHTS = (30, 20, 15, 10, 10, 8, 5, 2)
HOSTS = tuple(f"h{n:02d}" for n in range(1, 25))
HOST_WEIGHTS = tuple(max(1, int(100 / n)) for n in range(1, 25))
WORKSPACES = ("api", "web", "ml", "scratch", "infra")
SOURCES = ("api", "api", "api", "schedule", "ci")
IMAGES = ("python-dev", "node-dev", "go-dev", "rust-dev", "java-dev", "data-science", "base", "ml-gpu")
STATUSES = ("succeeded", "failed", "running", "queued", "cancelled", "pending", "dispatched")
STATUS_WEIGHTS = (60, 20, 5, 5, 4, 3, 3)
KINDS = ("workspace_create", "image_build", "workspace_start", "workspace_stop", "workspace_delete", "host_cleanup")
KIND_WEIGHTS = (35, 30, 10, 10, 8, 7)
FINAL = {"succeeded", "failed", "cancelled"}

PACKAGES = ("numpy", "pandas", "torch", "left-pad", "react", "tokio", "serde", "requests", "libssl-dev", "build-essential")
COMMANDS = ("make install", "pip install -r requirements.txt", "npm ci", "cargo build --release", "apt-get install -y libpq-dev", "go build ./...")

ERRORS: tuple[str, ...] = (
    "No space left on device: write /var/lib/docker/overlay2/{hex}/diff/{file}: errno 28",
    'OCI runtime create failed: container_linux.go:380: starting container process caused: exec: "{cmd}": executable file not found in $PATH',
    "failed to pull image {image}:{tag}: manifest unknown: manifest tagged by {tag} is not found",
    "Step {n}/{m} : RUN {command} returned a non-zero code: {code}",
    "connection refused: dial tcp 127.0.0.1:{port}: connect: connection refused",
    "context deadline exceeded while waiting for container {ws} to start",
    "OOMKilled: container {ws} exceeded its memory limit of {mem} MiB",
    "pip install failed: Could not find a version that satisfies the requirement {pkg}=={ver}",
    "npm ERR! code ERESOLVE unable to resolve dependency tree while installing {pkg}",
    "agent lost: host {host} missed 3 heartbeats in a row",
    "disk quota exceeded on /home/{user}/projects",
    "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
    "timeout after {s}s waiting for workspace {ws} to become healthy",
    "E: Unable to locate package {pkg}",
    "error: failed to compile {pkg} v{ver}, intermediate artifacts can be found at /tmp/cargo-install{hex}",
    "fatal: unable to access 'https://git.example.com/{user}/{ws}.git/': Could not resolve host: git.example.com",
    "cannot allocate memory: fork/exec /usr/bin/{file} failed",
    "the build was cancelled by {user} before it finished",
)
LOG_LINES: tuple[str, ...] = (
    "Step {n}/{m} : RUN {command}",
    "Get:{n} http://deb.debian.org/debian bookworm InRelease [{mem} kB]",
    "Reading package lists...",
    "Building dependency tree...",
    "Collecting {pkg}=={ver}",
    "Downloading {pkg}-{ver}.tar.gz ({mem} kB)",
    "Successfully installed {pkg}-{ver}",
    " ---> Running in {hex}",
    " ---> {hex}",
    "Removing intermediate container {hex}",
    "workspace {ws} scheduled on {host}",
    "pulling layer {hex}",
    "warning: retrying request to registry after {s}s",
    "Successfully built {hex}",
    "container {ws} started, listening on port {port}",
)


@dataclasses.dataclass(frozen=True)
class User:
    id: uuid.UUID
    name: str


def users(seed: int = 1) -> list[User]:
    rng = random.Random(seed)
    return [User(uuid.UUID(int=rng.getrandbits(128), version=4), name) for name in USERS]


def _fill(template: str, rng: random.Random, user: str, host: str, image: str, ws: str) -> str:
    return template.format(
        hex=f"{rng.getrandbits(48):012x}",
        file=rng.choice(("layer.tar", "index.db", "site-packages", "node_modules", "cc1plus", "ld")),
        cmd=rng.choice(("/bin/bash", "python3", "node", "entrypoint.sh")),
        command=rng.choice(COMMANDS),
        image=image,
        tag=rng.choice(("latest", "3.12", "20-slim", "nightly", "v1.4.2")),
        n=rng.randint(1, 12),
        m=rng.randint(12, 20),
        code=rng.choice((1, 2, 100, 127, 137)),
        port=rng.randint(2000, 65000),
        ws=ws,
        mem=rng.choice((512, 1024, 2048, 4096, 8192)),
        pkg=rng.choice(PACKAGES),
        ver=f"{rng.randint(0, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}",
        host=host,
        user=user,
        s=rng.choice((30, 60, 120, 300)),
    )


COLUMNS = (
    "id",
    "kind",
    "status",
    "source",
    "user_id",
    "user_name",
    "host_name",
    "image_name",
    "workspace_name",
    "error",
    "log_tail",
    "attempts",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "version",
)


def _pool(rng: random.Random, templates: tuple[str, ...], people: list[User], size: int) -> list[str]:
    return [
        _fill(rng.choice(templates), rng, rng.choice(people).name, rng.choice(HOSTS), rng.choice(IMAGES), f"ws-{rng.randrange(500)}")
        for _ in range(size)
    ]


def _cumulative(weights: tuple[int, ...]) -> list[int]:
    total, out = 0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def jobs(
    count: int,
    *,
    seed: int = 1,
    people: list[User] | None = None,
    span_days: int = 90,
    window: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> typing.Iterator[tuple]:
    """``count`` job rows as tuples in :data:`COLUMNS` order (for COPY).

    Creation times are random over the ``span_days`` before :data:`BASE`, or,
    with ``window``, ascending through it, the order a live system inserts
    jobs in (what the benchmark loads, so the table's physical order follows
    time as it would in production).

    Error texts and log lines are drawn from pools filled once per call (a
    few thousand distinct texts), which keeps a million rows to seconds.
    """
    rng = random.Random(seed)
    people = people or users()
    span = span_days * 86_400_000_000
    errors = _pool(rng, ERRORS, people, 4096)
    lines = _pool(rng, LOG_LINES, people, 8192)
    user_w, host_w = _cumulative(USER_WEIGHTS[: len(people)]), _cumulative(HOST_WEIGHTS)
    status_w, kind_w = _cumulative(STATUS_WEIGHTS), _cumulative(KIND_WEIGHTS)
    choices, rand, randrange, randint = rng.choices, rng.random, rng.randrange, rng.randint
    second = datetime.timedelta(seconds=1)
    previous: datetime.datetime | None = None
    if window is not None:
        first, step = window[0], (window[1] - window[0]) / max(count, 1)
    for i in range(count):
        user = choices(people, cum_weights=user_w)[0]
        host = choices(HOSTS, cum_weights=host_w)[0]
        status = choices(STATUSES, cum_weights=status_w)[0]
        kind = choices(KINDS, cum_weights=kind_w)[0]
        image = IMAGES[randrange(len(IMAGES))]
        ws = f"{user.name}-{WORKSPACES[randrange(len(WORKSPACES))]}"
        # A few jobs share their creation instant with the previous one, so
        # order and cursors must rely on the id as the tie-breaker.
        if previous is not None and rand() < 0.03:
            created = previous
        elif window is not None:
            created = first + step * (i + rand())
        else:
            created = BASE - datetime.timedelta(microseconds=randrange(span))
        previous = created
        error = None
        if status == "failed" or (status == "cancelled" and rand() < 0.5):
            error = errors[randrange(4096)]
        tail = choices(lines, k=randint(0, 8))
        if error:
            tail.append(error)
        started = created + randint(1, 30) * second if status not in ("queued", "pending") else None
        finished = created + randint(31, 3600) * second if status in FINAL else None
        yield (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            kind,
            status,
            SOURCES[randrange(len(SOURCES))],
            user.id,
            user.name,
            host,
            image if kind == "image_build" or rand() < 0.7 else None,
            ws if kind.startswith("workspace") else None,
            error,
            "\n".join(tail),
            randint(0, 3),
            created,
            finished or started or created,
            started,
            finished,
            randint(1, 6),
        )
