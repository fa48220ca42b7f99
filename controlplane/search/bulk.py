"""Bulk-index changes until every item has a final outcome.

Only the items that failed transiently (429, 5xx, or the whole request when
Elasticsearch was unreachable) are sent again, after an exponential backoff
with full jitter; items that succeeded or were stale (409) are not repeated.
Items Elasticsearch rejects for good come back to the caller with ES's reason
(the sync consumer dead-letters them); a request refused as a whole (413) is
halved until the offending document is alone. The loop ends early only when
``stopping`` is set, raising :class:`Interrupted`: nothing is acknowledged then,
so the messages are delivered again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import typing

import elasticsearch

from controlplane import settings as cp_settings
from controlplane.search import client, metrics
from controlplane.search.domain import documents
from shared.domain import backoff

logger = logging.getLogger(__name__)


class Interrupted(Exception):
    """Asked to stop while items were still waiting for a retry."""


@dataclasses.dataclass
class Report:
    indexed: list[documents.Change] = dataclasses.field(default_factory=list)
    stale: list[documents.Change] = dataclasses.field(default_factory=list)
    rejected: list[tuple[documents.Change, str]] = dataclasses.field(default_factory=list)
    attempts: int = 0


async def write(
    es: elasticsearch.AsyncElasticsearch,
    changes: typing.Sequence[documents.Change],
    target: str,
    *,
    alias: bool,
    search: cp_settings.SearchSettings,
    stopping: asyncio.Event | None = None,
) -> Report:
    """Index ``changes`` into ``target`` (an alias when ``alias``: then a missing alias is retried, never auto-created).

    Retries back off from ``search.retry_initial`` to ``search.retry_max``; one
    request may take ``search.bulk_timeout``.
    """
    report = Report()
    pending = list(changes)
    delays = backoff.exponential(search.retry_initial, search.retry_max, full_jitter=True)
    es = es.options(request_timeout=search.bulk_timeout)
    while pending:
        report.attempts += 1
        metrics.BULK_SIZE.observe(len(pending))
        operations: list[dict[str, typing.Any]] = []
        for change in pending:
            operations.extend(change.action(target))
        try:
            async with client.translated("bulk"):
                response = await es.bulk(operations=operations, require_alias=alias or None)
            items = response["items"]
        except client.Unavailable as exc:
            metrics.BULK_FAILURES.inc()
            logger.warning("bulk of %d documents failed (%s); retrying", len(pending), exc)
            await _pause(delays.next(), stopping)
            continue
        except client.Rejected as exc:
            # The request as a whole was refused (413: too large). Halve it until
            # the one document to blame is alone, and reject only that one.
            if len(pending) == 1:
                report.rejected.append((pending[0], str(exc)))
                return report
            half = len(pending) // 2
            for part in (pending[:half], pending[half:]):
                sub = await write(es, part, target, alias=alias, search=search, stopping=stopping)
                report.indexed += sub.indexed
                report.stale += sub.stale
                report.rejected += sub.rejected
                report.attempts += sub.attempts
            return report
        retry: list[documents.Change] = []
        for change, item in zip(pending, items, strict=True):
            result = next(iter(item.values()))
            error = result.get("error")
            verdict = documents.outcome(int(result.get("status", 500)), error)
            metrics.BULK_ITEMS.labels(verdict.value).inc()
            if verdict is documents.Outcome.INDEXED:
                report.indexed.append(change)
            elif verdict is documents.Outcome.STALE:
                report.stale.append(change)
            elif verdict is documents.Outcome.RETRY:
                retry.append(change)
            else:
                report.rejected.append((change, documents.reason(error)))
        if retry:
            logger.warning("%d of %d bulk items failed transiently; retrying them", len(retry), len(pending))
            await _pause(delays.next(), stopping)
        pending = retry
    return report


async def _pause(seconds: float, stopping: asyncio.Event | None) -> None:
    if stopping is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return
    raise Interrupted("stopping with bulk items still to retry")
