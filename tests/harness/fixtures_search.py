"""Elasticsearch fixtures: osmem-server behind the media-type shim, one per session.

Named so as not to clash with the osmem plugin's own ``osmem_server``,
``osmem_clone`` and ``osmem_url`` fixtures, which the suite does not use.
"""

from __future__ import annotations

import pytest

from tests.harness import fixtures_run
from tests.harness import run
from tests.harness import search_server


@pytest.fixture(scope="session")
def elasticsearch(request: pytest.FixtureRequest, harness_run: run.Run) -> search_server.SearchServer:
    """The server: ``.url`` for the ``elasticsearch`` 8 client, ``.stop()`` (connection refused), ``.start()`` (same URL)."""
    server = search_server.SearchServer(harness_run)
    try:
        seconds = server.start()
        fixtures_run.report(request.config, f"started osmem-server + shim at {server.url} in {seconds:.2f} s")
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def elasticsearch_url(elasticsearch: search_server.SearchServer) -> str:
    return elasticsearch.url
