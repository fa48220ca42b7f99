"""Where a server's CPU goes under load: py-spy's collapsed stacks, summed by function.

``record`` samples a running server with ``py-spy record --format raw``
(root, or ptrace allowed); ``top`` turns the collapsed stacks into the
functions that hold the most samples, on the stack at all ("inclusive") or on
top ("self"). Idle samples (the event loop waiting in ``select``/``epoll``)
are counted apart, so the shares are of the time the process was busy.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import shutil
import subprocess
import sys
import typing

IDLE = ("select (selectors.py)", "poll (selectors.py)", "_run_once (asyncio/base_events.py)")


@dataclasses.dataclass(frozen=True)
class Profile:
    busy: int  # samples with the process doing something
    idle: int  # samples waiting in the event loop's select
    inclusive: list[tuple[str, int]]
    self_: list[tuple[str, int]]


def executable() -> str | None:
    """py-spy on PATH, else beside this interpreter (a venv's bin/ need not be on PATH)."""
    beside = pathlib.Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def record(pid: int, seconds: float, out: pathlib.Path, rate: int = 250) -> pathlib.Path:
    subprocess.run(
        [
            executable() or "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nolineno",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def _short(frame: str) -> str:
    # "handle (/work/x/controlplane/api/endpoint.py)" -> "handle (controlplane/api/endpoint.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "lib/python3":
                where = where.split("/", 1)[1] if "/" in where else where
            break
    else:
        for root in ("controlplane/", "shared/", "bench/"):
            if "/" + root in where:
                where = root + where.split("/" + root, 1)[1]
                break
    return f"{name} ({where})"


def top(lines: typing.Iterable[str], n: int = 15) -> Profile:
    """The ``n`` functions with the most samples, from py-spy raw output ("a;b;c COUNT" per line)."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    busy = idle = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        if frames[-1] in IDLE:
            idle += count
            continue
        busy += count
        for frame in set(frames):
            inclusive[frame] += count
        self_[frames[-1]] += count
    return Profile(busy, idle, inclusive.most_common(n), self_.most_common(n))


def report(profile: Profile) -> str:
    out = [f"busy samples {profile.busy}, idle {profile.idle} ({profile.busy / max(1, profile.busy + profile.idle):.0%} busy)"]
    for title, rows in (("inclusive (on the stack)", profile.inclusive), ("self (on top)", profile.self_)):
        out.append(f"  {title}:")
        out += [f"    {count / max(1, profile.busy):6.1%}  {frame}" for frame, count in rows]
    return "\n".join(out)
