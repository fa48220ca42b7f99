"""sd_notify for ``Type=notify`` systemd units: READY, STATUS, WATCHDOG, STOPPING.

A no-op unless systemd set ``NOTIFY_SOCKET``. The watchdog period is half of
``WATCHDOG_USEC`` (set by ``WatchdogSec=``), and only when ``WATCHDOG_PID`` is
unset or names this process.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(*states: str, wait: float = 1.0) -> bool:
    """Send ``READY=1``-style assignments; True if they were sent.

    Called from the event loop, so it never blocks for long: a datagram socket
    whose reader lags (its queue holds only ``net.unix.max_dgram_qlen``
    messages) blocks the sender, and a blocked send would freeze every request
    of the daemon. It waits at most ``wait`` seconds for room, then gives up
    with a warning; watchdog pings pass ``wait=0`` (the next one comes soon).
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(wait)
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
        return True
    except (BlockingIOError, TimeoutError):
        logger.warning("sd_notify %s dropped: the notify socket's reader is not keeping up", "/".join(states))
        return False
    except OSError as exc:
        logger.warning("sd_notify failed: %s", exc)
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
