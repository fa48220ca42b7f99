"""Creating the index and its alias is maintenance: it gets search.bulk_timeout, not a dashboard query's deadline
(a busy node takes seconds to create an index, which failed the sync consumer's start under load)."""

from __future__ import annotations

import pytest

from controlplane.search import client, index
from tests.controlplane.search import conftest

pytestmark = pytest.mark.search


async def test_the_index_is_created_even_when_a_query_deadline_could_not_cover_it(database_url, kafka_bootstrap, topic_prefix, elasticsearch_url, es):
    # es (the fixture) deletes this test's indices afterwards; the settings share its alias.
    strict = conftest.make_settings(database_url, kafka_bootstrap, topic_prefix, elasticsearch_url, request_timeout=0.001, bulk_timeout=30.0)
    impatient = client.create(strict.search)
    try:
        with pytest.raises(client.Unavailable):
            await index.refresh(impatient, "_all")  # a plain request under the query deadline times out
        created = await index.ensure(impatient, strict.search)
    finally:
        await impatient.close()
    assert await index.behind(es, strict.search.index_alias) == [created]
