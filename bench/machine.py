"""What the machine was doing: printed at the start and end of a benchmark, since other work may share its cores."""

from __future__ import annotations

import os
import sys
import time


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
