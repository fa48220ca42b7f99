"""sd_notify: tell systemd we are ready, alive, reloading or stopping.

Only active when systemd set ``NOTIFY_SOCKET`` (``Type=notify`` units); a
no-op otherwise. The watchdog interval comes from ``WATCHDOG_USEC`` (set by
``WatchdogSec=``); pings go out at half that period, and only while every
root task is alive, so a wedged agent gets restarted by systemd.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*states: str) -> bool:
    """Send ``READY=1``-style assignments; True if a socket was there to send to."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        # Abstract namespace socket.
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
        return True
    except OSError as exc:
        log.warning("sd_notify failed", extra={"error": str(exc)})
        return False


def watchdog_period() -> float | None:
    """Seconds between watchdog pings, or None when systemd expects none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return max(0.05, int(usec) / 1e6 / 2)
    except ValueError:
        return None
