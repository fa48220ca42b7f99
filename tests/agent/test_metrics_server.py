"""The agent's /metrics + /healthz server: answers from its thread, and stops at once when told.

Its thread waits for a request with no timeout (an idle agent's thread does
not wake ten times a second to poll a stop flag); stop() wakes it with a
connection of its own.
"""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from agent import metrics


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read()


def test_it_serves_and_a_stop_ends_the_thread_and_closes_the_port() -> None:
    server = metrics.Server("127.0.0.1", 0, lambda: {"status": "ok"})
    server.start()
    assert json.loads(_get(server.port, "/healthz")) == {"status": "ok"}
    assert b"a4c_agent_commands_total" in _get(server.port, "/metrics")
    server.stop()
    assert not server._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_a_server_bound_to_every_address_is_woken_through_loopback() -> None:
    server = metrics.Server("0.0.0.0", 0, lambda: {"status": "ok"})
    server.start()
    assert json.loads(_get(server.port, "/healthz")) == {"status": "ok"}
    server.stop()
    assert not server._thread.is_alive()


def test_stopping_a_server_that_never_started_only_closes_it() -> None:
    server = metrics.Server("127.0.0.1", 0, lambda: {"status": "starting"})
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
