"""The jobs index behind its alias: template, creation, alias swap, counts.

Readers and the sync consumer only ever address the alias
(``search.index_alias``); concrete indices are ``<alias>-<stamp>`` and get
their settings and mappings from the index template, so a reindex only has
to create a name.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import typing

import elasticsearch

from controlplane import settings as cp_settings
from controlplane.search import client
from controlplane.search.domain import mapping

logger = logging.getLogger(__name__)

FIRST = "initial"


async def put_template(es: elasticsearch.AsyncElasticsearch, search: cp_settings.SearchSettings) -> None:
    body = mapping.template(search.index_alias, shards=search.shards, replicas=search.replicas, refresh_interval=search.refresh_interval)
    async with client.translated("put index template"):
        await es.indices.put_index_template(name=search.index_alias, **body)


async def behind(es: elasticsearch.AsyncElasticsearch, alias: str) -> list[str]:
    """The concrete indices the alias points at now (empty if there is no alias)."""
    async with client.translated("get alias"):
        try:
            found = await es.indices.get_alias(name=alias)
        except elasticsearch.NotFoundError:
            return []
    return sorted(found.body)


def new_name(alias: str) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dt%H%M%S")
    return mapping.index_name(alias, f"{stamp}-{secrets.token_hex(2)}")


async def create(es: elasticsearch.AsyncElasticsearch, name: str) -> None:
    """Create a concrete index (the template supplies everything); existing is fine."""
    async with client.translated(f"create index {name}"):
        try:
            await es.indices.create(index=name)
        except elasticsearch.BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise


async def ensure(es: elasticsearch.AsyncElasticsearch, search: cp_settings.SearchSettings) -> str:
    """Template, a first index and the alias: whatever is missing. Returns the index behind the alias.

    Several control-plane instances may start at once: the first index has a
    fixed name, so they all create (or find) the same one and the alias never
    points at two.
    """
    # Maintenance, not a dashboard query: creating an index waits for a cluster-state
    # update and its primary shard, which a busy node takes seconds over.
    es = es.options(request_timeout=search.bulk_timeout)
    await put_template(es, search)
    current = await behind(es, search.index_alias)
    if current:
        return current[0]
    first = mapping.index_name(search.index_alias, FIRST)
    await create(es, first)
    async with client.translated("add alias"):
        await es.indices.update_aliases(actions=[{"add": {"index": first, "alias": search.index_alias, "is_write_index": True}}])
    logger.info("created search index %s behind alias %s", first, search.index_alias)
    return first


async def swap(es: elasticsearch.AsyncElasticsearch, alias: str, new: str) -> list[str]:
    """Point the alias at ``new`` only, in one atomic request. Returns the indices it left."""
    old = [name for name in await behind(es, alias) if name != new]
    actions: list[dict[str, typing.Any]] = [{"remove": {"index": name, "alias": alias}} for name in old]
    actions.append({"add": {"index": new, "alias": alias, "is_write_index": True}})
    async with client.translated("swap alias"):
        await es.indices.update_aliases(actions=actions)
    return old


async def delete(es: elasticsearch.AsyncElasticsearch, name: str) -> None:
    async with client.translated(f"delete index {name}"):
        try:
            await es.indices.delete(index=name)
        except elasticsearch.NotFoundError:
            pass


async def refresh(es: elasticsearch.AsyncElasticsearch, target: str) -> None:
    async with client.translated(f"refresh {target}"):
        await es.indices.refresh(index=target)


async def live_count(es: elasticsearch.AsyncElasticsearch, target: str) -> int:
    """Jobs that are not tombstones."""
    async with client.translated(f"count {target}"):
        found = await es.count(index=target, query={"bool": {"must_not": [{"term": {"deleted": True}}]}})
    return int(found["count"])
