"""SIGTERM drains in order: /readyz goes 503, the listener closes, in-flight requests finish; and /v1/version.

A real ``a4c-controlplane run`` on the harness's PostgreSQL (its broker
absent: the consumers retry quietly, /readyz does not depend on them until
records wait). A load balancer routes by /readyz, so while it says 503 the
instance must still answer what was already routed to it; a request being
handled when the listener closes must still get its answer.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import pathlib
import signal
import socket
import typing
import urllib.error
import urllib.request

import asyncpg
import pytest

from controlplane.db import migrate
from tests.e2e import system
from tests.harness import ports, wait

DRAIN_DELAY = 4.0
WAITING_INSERT = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'a4c-controlplane'"
    " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO enrolment_tokens%'"
)


def _plane(tmp_path: pathlib.Path, database_url: str, drain_delay: float) -> system.ControlPlane:
    config = {
        "database": {"url": database_url},
        "kafka": {"bootstrap_servers": [f"127.0.0.1:{ports.free_port()}"]},
        "http": {"drain_delay": drain_delay, "shutdown_timeout": 30.0},
        "relay": {"enabled": False},
        "reconciler": {"enabled": False},
        "scheduler": {"enabled": False},
        "logging": {"format": "text"},
    }
    return system.ControlPlane(tmp_path, "cp", config)


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def _fetchval(url: str, sql: str) -> typing.Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _read_answer(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


@pytest.fixture
def plane(tmp_path, database_url) -> typing.Iterator[system.ControlPlane]:
    started = _plane(tmp_path, database_url, DRAIN_DELAY).start()
    try:
        yield started
    finally:
        started.kill()


async def test_sigterm_turns_readiness_off_then_closes_the_listener_then_finishes_in_flight_requests(plane, tmp_path, database_url) -> None:
    token = system.create_admin(tmp_path / "cp.yaml", tmp_path)
    assert _get(f"{plane.url}/readyz")[0] == 200
    # A request in flight: its INSERT waits on a table lock the test holds, so its handler is running when SIGTERM comes.
    locker = await asyncpg.connect(database_url)
    try:
        blocking = locker.transaction()
        await blocking.start()
        await locker.execute("LOCK TABLE enrolment_tokens IN EXCLUSIVE MODE")
        body = json.dumps({"description": "answered across a shutdown"}).encode()
        in_flight = socket.create_connection(("127.0.0.1", plane.port), timeout=30)
        in_flight.sendall(
            b"POST /v1/enrolment-tokens HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # Asked outside the locking transaction: pg_stat_activity is a snapshot per transaction.
        await wait.eventually(
            lambda: _fetchval(database_url, WAITING_INSERT), timeout=10, interval=0.05, message="the request's INSERT waits on the lock"
        )
        assert plane.process is not None
        plane.process.send_signal(signal.SIGTERM)

        # 1. Not ready any more, naming why, while the listener still takes new requests.
        async def unready() -> dict | None:
            status, answer = await asyncio.to_thread(_get, f"{plane.url}/readyz")
            return answer if status == 503 else None

        answer = await wait.eventually(unready, timeout=DRAIN_DELAY, interval=0.05, message="/readyz answers 503 after SIGTERM")
        assert "draining" in answer["error"]["message"], answer
        me = await asyncio.to_thread(_get, f"{plane.url}/v1/me", token)
        assert me[0] == 200 and me[1]["role"] == "admin", me

        # 2. Then the listener closes; the in-flight request keeps the process alive.
        await wait.eventually(lambda: _refused(plane.port), timeout=DRAIN_DELAY + 15, interval=0.05, message="listener closed after the drain delay")
        assert plane.process.poll() is None, "the process ended with a request in flight"
        await blocking.rollback()
    finally:
        await locker.close()

    # 3. The in-flight request is answered in full, then the process ends cleanly.
    status, created = await asyncio.to_thread(_read_answer, in_flight)
    in_flight.close()
    assert status == 201 and created["token"], created
    assert await asyncio.to_thread(plane.process.wait, 30) == 0, plane.log.read_text()


def test_version_names_the_release_and_the_schema_it_was_written_for(plane) -> None:
    newest = sorted(p.stem for p in migrate.MIGRATIONS.joinpath("versions").glob("0*.py"))[-1]
    assert _get(f"{plane.url}/v1/version") == (200, {"version": importlib.metadata.version("a4c"), "schema_revision": newest})
