"""The API alone (no relay, consumers or scheduler), served exactly as ``a4c-controlplane run`` serves it."""

from __future__ import annotations

import asyncio

from controlplane import settings as cp_settings
from controlplane.api import server

if __name__ == "__main__":
    asyncio.run(server.serve(cp_settings.load()))
