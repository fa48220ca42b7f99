"""The API alone (no relay, consumers or scheduler), served exactly as ``a4c-controlplane run`` serves it."""

from __future__ import annotations

import argparse

from bench.api_read import loops
from controlplane import settings as cp_settings
from controlplane.api import server

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=loops.CHOICES, default="asyncio")
    loops.run(server.serve(cp_settings.load()), parser.parse_args().loop)
