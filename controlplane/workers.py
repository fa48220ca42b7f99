"""The control plane's background loops, as one aiohttp ``cleanup_ctx``.

Every instance runs the same set, each a named, guarded root task under
:class:`shared.supervisor.Supervisor` (a crash is logged and restarted with
backoff, and reported by ``/readyz``):

=================  ===============================================  ==================
task               what                                             enabled by
=================  ===============================================  ==================
relay              outbox rows -> Kafka (LISTEN/NOTIFY woken)       relay.enabled
events             agent events -> PostgreSQL (signed, idempotent)  always
ci                 signed ``<prefix>.ci-builds`` -> build jobs      always
reconciler         liveness, per-host plans, requeue, placement     reconciler.enabled
scheduler          cron schedules -> build jobs, exactly once       scheduler.enabled
search-sync        ``<prefix>.job-sync`` -> Elasticsearch           search.elasticsearch_url
                                                                    and sync_in_process
=================  ===============================================  ==================

They stop in reverse order on shutdown, the relay last, so whatever the
others commit on their way out is still published.

``/readyz`` fails naming a consumer (events, ci) that has not committed past
records waiting for ``consumers.stall_after``.

Kafka being down never stops the API from starting: each loop owns its
client and retries with backoff while the outbox simply grows.
"""

from __future__ import annotations

import asyncio
import logging
import typing

from aiohttp import web

from controlplane import appkeys, ci, reconciler, relay, scheduler
from controlplane.events import consumer as events_consumer
from shared import consuming, kafka, supervisor

logger = logging.getLogger(__name__)

SUPERVISOR = web.AppKey("supervisor", supervisor.Supervisor)


def build(app: web.Application) -> supervisor.Supervisor:
    settings = app[appkeys.SETTINGS]
    engine = app[appkeys.ENGINE]
    sessions = app[appkeys.SESSIONS]
    sup = supervisor.Supervisor(max_backoff=settings.kafka.retry_backoff_max)

    if settings.relay.enabled:

        async def relay_loop(stopping: asyncio.Event) -> None:
            def new() -> typing.Any:
                return kafka.producer(settings.kafka, client_id="a4c-relay")

            producer = kafka.TopicCreatingProducer(new(), settings.kafka, factory=new)
            await producer.start()
            try:
                await relay.run(engine, producer, settings, listen_url=settings.database.url, stopping=stopping)
            finally:
                await producer.stop()

        sup.add("relay", relay_loop)

    # Their progress is what /readyz checks for a stalled consumer.
    progress = {name: consuming.Progress(name) for name in ("events", "ci")}
    app[appkeys.CONSUMERS] = progress
    sup.add("events", lambda stopping: events_consumer.run(engine, settings, stopping=stopping, progress=progress["events"]))
    sup.add("ci", lambda stopping: ci.run(settings, ci.DatabaseGateway(sessions, settings), stopping=stopping, progress=progress["ci"]))
    if settings.reconciler.enabled:
        sup.add("reconciler", lambda stopping: reconciler.run(sessions, settings, stopping=stopping))
    if settings.scheduler.enabled:
        sup.add("scheduler", lambda stopping: scheduler.run(sessions, settings, stopping=stopping))
    if settings.search.elasticsearch_url and settings.search.sync_in_process:
        from controlplane.search import sync  # only instances that feed Elasticsearch need the client

        sup.add("search-sync", lambda stopping: sync.run(settings, stopping))
    return sup


async def workers_ctx(app: web.Application) -> typing.AsyncIterator[None]:
    sup = build(app)
    app[SUPERVISOR] = sup
    sup.start()
    try:
        yield
    finally:
        cancelled = await sup.shutdown(app[appkeys.SETTINGS].http.shutdown_timeout)
        if cancelled:
            logger.warning("background loops cut short at shutdown: %s", ", ".join(cancelled))
