"""sd_notify never blocks the event loop for long, whatever the reader of the notify socket does."""

from __future__ import annotations

import socket
import time

import pytest

from shared import sdnotify


@pytest.fixture
def unread_socket(tmp_path, monkeypatch):
    """A notify socket nobody reads: its queue fills after a few datagrams, as when systemd (or a test) lags."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_watchdog_pings_to_a_reader_that_lags_are_dropped_at_once_instead_of_blocking(unread_socket):
    began = time.monotonic()
    sent = [sdnotify.notify("WATCHDOG=1", wait=0) for _ in range(2000)]
    assert time.monotonic() - began < 5, "2,000 pings to a full queue returned promptly"
    assert sent[0] and not sent[-1], "the first fit in the queue; once it was full they were dropped"
    assert unread_socket.recv(64) == b"WATCHDOG=1"


def test_other_states_wait_a_bounded_time_for_room_then_give_up(unread_socket):
    while sdnotify.notify("WATCHDOG=1", wait=0):
        pass  # fill the queue
    began = time.monotonic()
    assert sdnotify.notify("STOPPING=1", wait=0.3) is False
    assert 0.25 < time.monotonic() - began < 3
    unread_socket.recv(64)  # room for one
    assert sdnotify.notify("READY=1", wait=0.3) is True
