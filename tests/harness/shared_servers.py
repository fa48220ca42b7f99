"""The JVM servers (Apache Kafka, Elasticsearch) shared by every xdist worker of one run.

A JVM server costs seconds to start and hundreds of MB to keep, so one
``make test`` starts each once, in the xdist controller, before the workers
exist; they find it through ``A4C_TEST_SHARED`` (a directory with one JSON file
per server). Topic, consumer-group and index names carry per-run prefixes, so
workers never meet on a shared server. Tests that stop, kill or wipe a server
take a private one instead (``private_kafka_broker``, ``private_elasticsearch``).

In one process (``TEST_WORKERS=0``) the session fixtures start their own, so a
run of a few files pays only for what it uses.

The shared directory is a run directory of its own (``/tmp/a4c-test-<id>``,
owned by the controller), so a crashed controller's servers are reaped by the
next run like any other leftovers.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import typing

from tests.harness import run as run_mod

if typing.TYPE_CHECKING:
    from tests.harness import elasticsearch_node, kafka_broker

ENV = "A4C_TEST_SHARED"


class SharedServerError(RuntimeError):
    """A shared server could not be started, or a test tried to stop one."""


@dataclasses.dataclass(frozen=True)
class KafkaInfo:
    bootstrap: str
    port: int
    version: str
    shared: bool = True

    def stop(self) -> None:
        raise SharedServerError("this broker is shared by every worker: take private_kafka_broker to stop it")

    kill = restart = start = freeze = thaw = stop


@dataclasses.dataclass(frozen=True)
class ElasticsearchInfo:
    url: str
    version: str
    flavor: str
    shared: bool = True

    def stop(self, **_: object) -> None:
        raise SharedServerError("this node is shared by every worker: take private_elasticsearch to stop it")

    kill = start = stop


class Controller:
    """Owns the shared servers for one run: started together, stopped together."""

    def __init__(self) -> None:
        self.run = run_mod.Run()
        self._servers: list[kafka_broker.KafkaBroker | elasticsearch_node.ElasticsearchNode] = []

    @property
    def directory(self) -> pathlib.Path:
        return self.run.root

    def start(self) -> list[str]:
        """Start Kafka and Elasticsearch side by side; returns a line per server for the session header."""
        from tests.harness import elasticsearch_node, kafka_broker

        broker = kafka_broker.KafkaBroker(self.run)
        node = elasticsearch_node.ElasticsearchNode(self.run.subdir("elasticsearch"), track=self.run.track)
        self._servers = [broker, node]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            kafka_started = pool.submit(broker.start)
            es_started = pool.submit(node.start)
            errors = []
            for future in (kafka_started, es_started):
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001 - reported together below
                    errors.append(str(exc))
        if errors:
            self.stop()
            raise SharedServerError("the shared servers could not start:\n" + "\n".join(errors))
        _write(self.directory / "kafka.json", KafkaInfo(broker.bootstrap, broker.port, broker.version or "?"))
        _write(self.directory / "elasticsearch.json", ElasticsearchInfo(node.url, node.version or "?", node.flavor or "?"))
        os.environ[ENV] = str(self.directory)
        return [
            f"Apache Kafka {broker.version} on {broker.bootstrap} (KRaft, shared by every worker; started in {kafka_started.result():.1f} s)",
            f"Elasticsearch {node.version} ({node.flavor}) at {node.url} (shared by every worker; started in {es_started.result():.1f} s)",
        ]

    def stop(self) -> None:
        for server in self._servers:
            try:
                server.stop()
            except Exception:  # noqa: BLE001, S110 - stop the others anyway
                pass
        os.environ.pop(ENV, None)
        self.run.close()


def _write(path: pathlib.Path, info: KafkaInfo | ElasticsearchInfo) -> None:
    path.write_text(json.dumps(dataclasses.asdict(info)))


def directory() -> pathlib.Path | None:
    """The run's shared directory, if this process runs under a controller (an xdist worker of ``make test``)."""
    shared = os.environ.get(ENV)
    return pathlib.Path(shared) if shared else None


def kafka() -> KafkaInfo | None:
    """The shared broker, if this process runs under a controller that started one."""
    shared = directory()
    if shared is None:
        return None
    return KafkaInfo(**json.loads((shared / "kafka.json").read_text()))


def elasticsearch() -> ElasticsearchInfo | None:
    shared = directory()
    if shared is None:
        return None
    return ElasticsearchInfo(**json.loads((shared / "elasticsearch.json").read_text()))
