"""The clock agents stamp their events with: the system clock, shifted by ``A4C_CLOCK_OFFSET`` seconds.

**For fault testing only** (like ``A4C_FAILPOINTS``, shared/failpoints.py):
``A4C_CLOCK_OFFSET=-240`` makes one process behave as if its clock were
240 s behind, so a test can check that a skewed agent is neither dropped nor
declared down (tests/e2e/test_faults.py). Never set it on a real host. Read
once, at import.
"""

from __future__ import annotations

import os
import time as _time

ENV_VAR = "A4C_CLOCK_OFFSET"
OFFSET = float(os.environ.get(ENV_VAR) or 0.0)


def time() -> float:
    return _time.time() + OFFSET


def time_ns() -> int:
    return _time.time_ns() + int(OFFSET * 1_000_000_000)
