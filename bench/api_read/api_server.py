"""The API alone (no relay, consumers or scheduler), served exactly as ``a4c-controlplane run`` serves it."""

from __future__ import annotations

import sys

from bench.api_read import loops
from controlplane import settings as cp_settings
from controlplane.api import server

if __name__ == "__main__":
    loops.run(server.serve(cp_settings.load()), sys.argv[1] if len(sys.argv) > 1 else "asyncio")
