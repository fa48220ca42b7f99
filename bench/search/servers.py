"""The real servers a search benchmark runs against, started on free loopback ports and stopped afterwards.

* a throwaway migrated PostgreSQL database on the machine's server, or on an
  embedded one started here when nothing answers on 127.0.0.1:5432;
* a real Elasticsearch 8 node (the test harness's, built from Maven Central's
  jars), unless ``--elasticsearch-url`` names a cluster;
* Apache Kafka (the test harness's KRaft node; bench/sync only).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import secrets
import socket
import sys
import tempfile
import typing
import urllib.parse

import asyncpg

from bench import postgres
from controlplane.db import migrate

ES_HEAP = "3g"  # the bench node's heap: a million jobs, on a 24 GB machine
ADMIN_URL = None  # bench/postgres.py: --admin-url, else 127.0.0.1:5432, else an embedded server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def database(admin_url: str | None = ADMIN_URL) -> typing.Iterator[str]:
    """A new migrated database ``a4c_bench_<random>``, dropped afterwards; yields its URL.

    On ``admin_url``'s server, else on 127.0.0.1:5432, else on an embedded server started here (bench/postgres.py)."""
    with postgres.server(admin_url) as admin_url:
        name = f"a4c_bench_{secrets.token_hex(4)}"
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
        try:
            url = urllib.parse.urlunsplit(urllib.parse.urlsplit(admin_url)._replace(path=f"/{name}"))
            migrate.upgrade(url)
            yield url
        finally:
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def elasticsearch(url: str | None = None, heap: str = ES_HEAP) -> typing.Iterator[str]:
    """``url`` as is, or a real Elasticsearch 8 node started here (the test harness's, from Maven Central's
    jars); yields the URL for the ES 8 client."""
    if url:
        yield url
        return
    from tests.harness import elasticsearch_node

    with tempfile.TemporaryDirectory(prefix="a4c-bench-es-") as directory:
        # A bench loads up to a million documents: a larger heap than the tests' node, and G1 (Elasticsearch's
        # own default) instead of the tests' serial collector, whose full collections of a multi-GB heap
        # would stop every query for hundreds of milliseconds.
        options = (
            *tuple(o for o in elasticsearch_node.JVM_OPTIONS if not o.startswith(("-Xms", "-Xmx")) and o != "-XX:+UseSerialGC"),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
        )
        node = elasticsearch_node.ElasticsearchNode(pathlib.Path(directory), jvm_options=options)
        node.start()
        try:
            print(f"Elasticsearch {node.version} ({node.flavor}, heap {heap}) at {node.url}", file=sys.stderr)
            yield node.url
        finally:
            node.stop()


@contextlib.contextmanager
def kafka(bootstrap: str | None = None) -> typing.Iterator[str]:
    """``bootstrap`` as is, or an Apache Kafka broker (the test harness's, KRaft) started here; yields host:port."""
    if bootstrap:
        yield bootstrap
        return
    from tests.harness import kafka_broker

    with tempfile.TemporaryDirectory(prefix="a4c-bench-kafka-") as directory:
        broker = kafka_broker.KafkaBroker(directory=pathlib.Path(directory))
        broker.start()
        try:
            print(f"Apache Kafka {broker.version} on {broker.bootstrap}", file=sys.stderr)
            yield broker.bootstrap
        finally:
            broker.stop()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
