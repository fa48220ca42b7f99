"""What the machine was doing: printed at the start and end of a benchmark, since other work may share its cores;
and waiting for a benchmark's own processes to go quiet before a step timed on its own."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import typing


def load(label: str) -> tuple[float, float, float]:
    """Print ``[bench] <label>: load average 1m 5m 15m on N CPUs`` to stderr; returns the three averages."""
    averages = os.getloadavg()
    stamp = time.strftime("%H:%M:%S")
    print(
        f"[bench {stamp}] {label}: load average {averages[0]:.2f} {averages[1]:.2f} {averages[2]:.2f} on {os.cpu_count()} CPUs",
        file=sys.stderr,
        flush=True,
    )
    return averages


def tree(roots: typing.Iterable[int]) -> list[int]:
    """``roots`` and every process below them (from /proc: pid → parent)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    # The name may hold spaces: the parent is the 2nd field after its closing parenthesis.
                    parent = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def cpu_ns(pids: typing.Iterable[int]) -> int:
    """CPU time these processes have used, all their threads, in ns (schedstat: finer than /proc/<pid>/stat's ticks)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


async def quiet(roots: typing.Iterable[int], *, window: float = 0.02, busy: float = 0.05, timeout: float = 3.0) -> tuple[float, bool]:
    """Wait until the process trees under ``roots`` used under ``busy`` of one core for a whole ``window``.

    For a step timed on its own: the work an earlier step set off (an agent
    finishing a job, Docker removing a container, consumers catching up) is
    done, so the step is not timed against it. Returns (seconds waited,
    whether it got quiet before ``timeout``).
    """
    pids = tree(roots)
    began = time.monotonic()
    before = cpu_ns(pids)
    while True:
        await asyncio.sleep(window)
        now = cpu_ns(pids)
        waited = time.monotonic() - began
        if now - before <= busy * window * 1e9:
            return waited, True
        if waited >= timeout:
            return waited, False
        before = now
