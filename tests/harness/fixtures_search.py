"""Elasticsearch fixtures: a real Elasticsearch 8 node, shared by the run's workers, and a private one for fault tests."""

from __future__ import annotations

import typing

import pytest

from tests.harness import fixtures_run, run, shared_servers

if typing.TYPE_CHECKING:
    from tests.harness import elasticsearch_node


@pytest.fixture(scope="session")
def elasticsearch(request: pytest.FixtureRequest, harness_run: run.Run):
    """The run's node: ``.url`` for the ``elasticsearch`` 8 client, ``.version``. Shared by every xdist
    worker, so it cannot be stopped: a test that stops or wipes a node takes ``private_elasticsearch``."""
    shared = shared_servers.elasticsearch()
    if shared is not None:
        yield shared
        return
    from tests.harness import elasticsearch_node

    node = elasticsearch_node.ElasticsearchNode(harness_run.subdir("elasticsearch"), track=harness_run.track)
    try:
        seconds = node.start()
        fixtures_run.report(request.config, f"started Elasticsearch {node.version} at {node.url} in {seconds:.1f} s")
        yield node
    finally:
        node.stop()


@pytest.fixture
def private_elasticsearch(harness_run: run.Run) -> typing.Iterator[elasticsearch_node.ElasticsearchNode]:
    """A node of this test's own: ``.stop()`` (connection refused, data kept), ``.start()`` (same URL),
    ``.stop(lose_data=True)``, ``.kill()``."""
    from tests.harness import elasticsearch_node

    node = elasticsearch_node.ElasticsearchNode(harness_run.subdir(f"elasticsearch-{run.secrets.token_hex(3)}"), track=harness_run.track)
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def elasticsearch_url(elasticsearch) -> str:
    return elasticsearch.url


@pytest.fixture(scope="module")
def module_elasticsearch(harness_run: run.Run) -> typing.Iterator[elasticsearch_node.ElasticsearchNode]:
    """A node for one module whose tests stop it. Such a module overrides ``elasticsearch``
    and ``elasticsearch_url`` with it, so everything it builds talks to it."""
    from tests.harness import elasticsearch_node

    node = elasticsearch_node.ElasticsearchNode(harness_run.subdir(f"elasticsearch-{run.secrets.token_hex(3)}"), track=harness_run.track)
    try:
        node.start()
        yield node
    finally:
        node.stop()
