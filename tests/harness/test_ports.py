"""free_port hands out loopback ports nothing listens on, never the same one twice."""

from __future__ import annotations

import socket

from tests.harness import ports


def test_free_ports_are_distinct_and_bindable_on_loopback():
    handed_out = [ports.free_port() for _ in range(20)]

    assert len(set(handed_out)) == 20
    for port in handed_out[:5]:
        assert not ports.is_listening(port)
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
