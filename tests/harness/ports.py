"""Free TCP ports on the loopback interface, for servers the tests start."""

from __future__ import annotations

import socket
import threading

_lock = threading.Lock()
# Ports already handed out in this process: the kernel may offer a port again
# as soon as the probe socket closes, before the server meant for it binds.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and this process has not handed out before."""
    with _lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port on 127.0.0.1 after 100 tries")


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether a TCP connection to host:port is accepted right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
