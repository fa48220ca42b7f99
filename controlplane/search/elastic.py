"""The jobs search on Elasticsearch: one request against the alias (the body comes from ``domain/requests.py``)."""

from __future__ import annotations

import elasticsearch

from controlplane.search import client
from controlplane.search.domain import query as query_mod
from controlplane.search.domain import requests, results


async def search(
    es: elasticsearch.AsyncElasticsearch,
    alias: str,
    q: query_mod.Query,
    owner: str | None,
    page: results.Page,
    *,
    facet_size: int,
) -> results.SearchResult:
    body = requests.body(q, owner, page, facet_size=facet_size)
    # The client spells the _source parameter "source".
    params = {("source" if key == "_source" else key): value for key, value in body.items()}
    async with client.translated("search"):
        response = await es.search(index=alias, **params)
    return requests.result(response.body, q, page, facet_size=facet_size)
