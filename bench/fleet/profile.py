"""Where a process spends its time, by py-spy sampling: ``--profile`` of bench/fleet.

py-spy (``pip install py-spy``; not a dependency of the benchmark) attaches to
the control-plane process for a while and writes raw collapsed stacks; the
summary is the share of samples under each of the project's own functions
(inclusive), which is what says "the reconciler took a quarter of the
process" without reading a flame graph.
"""

from __future__ import annotations

import collections
import pathlib
import re
import shutil
import subprocess
import sys

_OWN = re.compile(r"^(?P<func>[^ ]+) \((?P<path>[^:]+):\d+\)$")
_PACKAGES = ("controlplane/", "shared/")


def available() -> str | None:
    found = shutil.which("py-spy") or str(pathlib.Path(sys.executable).with_name("py-spy"))
    return found if pathlib.Path(found).exists() else None


def start(pid: int, seconds: float, out: pathlib.Path) -> subprocess.Popen | None:
    binary = available()
    if binary is None:
        print("  (--profile: py-spy is not installed; pip install py-spy)")
        return None
    return subprocess.Popen(
        [binary, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "--nonblocking", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summary(raw: pathlib.Path, top: int = 15) -> list[tuple[float, str]]:
    """(percent of samples, function) for the project's own functions, most inclusive first."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            m = _OWN.match(frame)
            where = [m["path"].rfind("/" + p) for p in _PACKAGES] if m else []
            if not m or max(where) < 0:
                continue
            name = f"{m['path'][max(where) + 1 :]}:{m['func']}"
            if name not in seen:
                seen.add(name)
                inclusive[name] += n
    return [(100 * n / total, name) for name, n in inclusive.most_common(top)] if total else []
