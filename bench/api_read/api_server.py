"""The API alone (no relay, consumers or scheduler), served exactly as ``a4c-controlplane run`` serves it."""

from __future__ import annotations

import argparse

from controlplane import settings as cp_settings
from controlplane.api import server
from shared import eventloop

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=eventloop.CHOICES, default="uvloop")
    eventloop.run(server.serve(cp_settings.load()), parser.parse_args().loop)
