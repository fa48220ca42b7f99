"""``python -m bench.sync``: PostgreSQL -> outbox -> Kafka -> Elasticsearch, against a raw bulk of the same documents.

One run, one machine, the same Elasticsearch-API server for both:

1. **raw**: the job documents, straight into a fresh index with
   ``elasticsearch.helpers.async_bulk`` (chunks of ``search.bulk_size``), then
   the same documents once more as an update: the ceiling for this server;
2. **pipeline**: the same jobs COPYed into PostgreSQL (the trigger writes
   their outbox rows), then every one of them updated in 1,000-row
   transactions; the outbox relay and the sync consumer (product code, in
   this process) carry them to the alias. Throughput counts from the first
   write to the last document visible to a search;
3. **latency**: single-row updates, one at a time; for each, commit ->
   visible to a search (polled every 10 ms), against the target of
   ``search.refresh_interval`` + 250 ms at p99 — and, as its baseline, after
   each one the same kind of write straight to the raw index (same size), so
   a tail that is the server's own shows in both.

Targets: pipeline throughput >= 80 % of raw; latency p99 within the target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import typing

import asyncpg
from elasticsearch import helpers

from bench import machine
from bench.search import servers
from controlplane import relay
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.search import client, index, sync
from controlplane.search.domain import documents
from shared import kafka
from tests.harness import jobgen

TARGET_RATIO = 0.8
LATENCY_SLACK = 0.25  # seconds on top of the refresh interval


def _as_json(row: tuple) -> dict[str, typing.Any]:
    """A generated row as the trigger's to_jsonb would render it."""
    out = {}
    for name, value in zip(jobgen.COLUMNS, row, strict=True):
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif value is not None and name in ("id", "user_id"):
            value = str(value)
        out[name] = value
    return out


async def raw_bulk(es, settings: cp_settings.Settings, rows: list[tuple], name: str) -> tuple[float, float]:
    """docs/s of helpers.async_bulk into a fresh index made from the same template: inserts, then one update of each."""
    await index.put_template(es, settings.search)
    await index.create(es, name)
    inserts = [documents.from_row(_as_json(r)) for r in rows]
    # The same change the pipeline makes (attempts = 6, one version up).
    updates = [documents.from_row({**_as_json(r), "attempts": 6, "version": r[-1] + 1}) for r in rows]
    bulk_es = es.options(request_timeout=settings.search.bulk_timeout)
    rates = []
    for changes in (inserts, updates):
        actions = ({"_index": name, "_id": c.id, "version": c.version, "version_type": "external", "_source": c.doc} for c in changes)
        began = time.perf_counter()
        ok, errors = await helpers.async_bulk(bulk_es, actions, chunk_size=settings.search.bulk_size, raise_on_error=False)
        rates.append(ok / (time.perf_counter() - began))
        assert isinstance(errors, list)  # a list unless stats_only
        if errors:
            raise SystemExit(f"raw bulk had {len(errors)} errors: {errors[:1]}")
    return rates[0], rates[1]


async def raw_probe_once(es, name: str, rows: list[tuple], i: int) -> float:
    """The latency baseline: write -> searchable for one document written straight to the raw index.

    No PostgreSQL, relay, Kafka or consumer. :func:`_probe` takes one of these
    right after each pipeline probe, so both see the search server in the
    same state (osmem-server, the stand-in this bench ran on until 2026-12,
    stalled writes for seconds at a time after a large load): whatever tail
    shows here is the server's own.
    """
    row = rows[(i * 7919) % len(rows)]
    change = documents.from_row({**_as_json(row), "attempts": 4 + i % 2, "version": row[-1] + 2 + i})
    began = time.perf_counter()
    await es.index(index=name, id=change.id, version=change.version, version_type="external", document=change.doc)
    await _until_visible(es, name, change.id, change.version)
    return time.perf_counter() - began


async def _until_visible(es, index_name: str, doc_id: str, version: int) -> None:
    """Poll every 10 ms until a search finds ``doc_id`` at ``version`` or later."""
    query = {"bool": {"filter": [{"ids": {"values": [doc_id]}}, {"range": {"version": {"gte": version}}}]}}
    while (await es.count(index=index_name, query=query))["count"] == 0:
        await asyncio.sleep(0.01)


async def _until(check: typing.Callable[[], typing.Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not done within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def pipeline(settings: cp_settings.Settings, es, rows: list[tuple], probes: int, rate: float, raw_index: str) -> dict[str, typing.Any]:
    alias = settings.search.index_alias
    engine = db_engine.create(settings.database)
    producer = kafka.producer(settings.kafka, client_id="bench-relay")
    await kafka.ensure_topics(settings.kafka, [f"{settings.kafka.topic_prefix}.job-sync"])
    await producer.start()
    stopping = asyncio.Event()
    stats = sync.Stats()
    # Stage times of every record, by job id: when the relay produced it (the
    # record's CreateTime) and when its bulk came back, so a slow probe can be
    # split into relay, broker + consumer + bulk, and search visibility.
    stages: dict[str, list[tuple[float, float]]] = {}

    async def after_bulk(batch: sync.Batch) -> None:
        done = time.time()
        for record in batch.records:
            key = record.key.decode() if isinstance(record.key, bytes) else str(record.key)
            stages.setdefault(key, []).append((record.timestamp / 1000, done))

    tasks = [
        asyncio.create_task(relay.run(engine, producer, settings, listen_url=settings.database.url, stopping=stopping)),
        asyncio.create_task(sync.run(settings, stopping, es=es, stats=stats, after_bulk=after_bulk)),
    ]
    conn = await asyncpg.connect(settings.database.url)
    try:
        # Warm up: the consumer has joined its group once one job went through.
        warm = list(jobgen.jobs(1, seed=4242))
        await conn.copy_records_to_table("jobs", records=warm, columns=list(jobgen.COLUMNS))
        await _until(lambda: _count(es, alias, None), "the first job", 120)

        n = len(rows)
        splits: dict[str, dict[str, float]] = {}
        began = time.perf_counter()
        await conn.copy_records_to_table("jobs", records=rows, columns=list(jobgen.COLUMNS))
        relayed = asyncio.create_task(_outbox_drained(settings.database.url, began))
        splits["inserts"] = {"committed_s": time.perf_counter() - began}
        await _until(lambda: _count(es, alias, n + 1), f"{n} inserted jobs visible", 3600)
        inserted = n / (time.perf_counter() - began)
        splits["inserts"].update(relayed_s=await relayed, visible_s=time.perf_counter() - began)

        ids = [r[0] for r in rows]
        began = time.perf_counter()
        for start in range(0, n, 1000):
            await conn.execute("UPDATE jobs SET attempts = 6 WHERE id = ANY($1::uuid[])", ids[start : start + 1000])
        splits["updates"] = {"committed_s": time.perf_counter() - began}
        # Once every write has committed (the relay may empty the outbox between two UPDATEs).
        relayed = asyncio.create_task(_outbox_drained(settings.database.url, began))
        await _until(lambda: _count(es, alias, n, attempts=6), f"{n} updates visible", 3600)
        updated = n / (time.perf_counter() - began)
        splits["updates"].update(relayed_s=await relayed, visible_s=time.perf_counter() - began)
        print(
            f"pipeline stages (s from the first write): {json.dumps({k: {s: round(v, 1) for s, v in d.items()} for k, d in splits.items()})}",
            flush=True,
        )

        print(f"pipeline: inserts {inserted:,.0f} docs/s, updates {updated:,.0f} docs/s; now probing latency", flush=True)
        probed, raw_latencies = await _probe(settings.database.url, es.options(request_timeout=60), alias, ids, probes, rate, raw_index, rows)
        latencies = [p[1] for p in probed]
        breakdown = {}
        for i, (job_id, latency, committed) in enumerate(probed):
            after = [s for s in stages.get(str(job_id), []) if s[0] >= committed - 0.01]
            if after:
                produced, bulked = after[0]
                breakdown[i] = {
                    "relay_ms": round((produced - committed) * 1000),
                    "broker_consumer_bulk_ms": round((bulked - produced) * 1000),
                    "visible_ms": round((committed + latency - bulked) * 1000),
                }
        return {
            "insert_docs_per_s": inserted,
            "update_docs_per_s": updated,
            "latencies_s": latencies,
            "consumer": stats.__dict__,
            "stages": breakdown,
            "raw_latencies_s": raw_latencies,
            "throughput_stages_s": splits,
        }
    finally:
        stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        await conn.close()
        await engine.dispose()


async def _outbox_drained(url: str, began: float) -> float:
    """Seconds from ``began`` until no outbox row is left unpublished (the relay's share of a throughput run)."""
    conn = await asyncpg.connect(url)
    try:
        while await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            await asyncio.sleep(0.05)
        return time.perf_counter() - began
    finally:
        await conn.close()


async def _count(es, alias: str, expected: int | None, attempts: int | None = None) -> bool:
    query: dict[str, typing.Any] = {"bool": {"must_not": [{"term": {"deleted": True}}]}}
    if attempts is not None:
        query["bool"]["filter"] = [{"term": {"attempts": attempts}}]
    try:
        found = (await es.count(index=alias, query=query))["count"]
    except Exception:  # noqa: BLE001 - the alias may not exist yet during warm-up
        return False
    return found >= 1 if expected is None else found >= expected


async def _probe(
    url: str, es, alias: str, ids: list, count: int, rate: float, raw_index: str, rows: list[tuple]
) -> tuple[list[tuple[typing.Any, float, float]], list[float]]:
    """Commit -> searchable for ``count`` single-row updates, one at a time, at most ``rate`` per second.

    One probe in flight: the polling searches must not load the server that
    the consumer is writing to, or they measure themselves.
    """
    probed: list[tuple[typing.Any, float, float]] = []  # (job id, commit -> visible, commit wall time)
    raw: list[float] = []
    conn = await asyncpg.connect(url)
    try:
        for i in range(count):
            slot = time.perf_counter() + 1 / rate
            job_id = ids[(i * 7919) % len(ids)]
            version = await conn.fetchval("UPDATE jobs SET attempts = $2 WHERE id = $1 RETURNING version", job_id, 4 + i % 2)
            committed, wall = time.perf_counter(), time.time()
            await _until_visible(es, alias, str(job_id), version)
            probed.append((job_id, time.perf_counter() - committed, wall))
            raw.append(await raw_probe_once(es, raw_index, rows, i))
            await asyncio.sleep(max(0.0, slot - time.perf_counter()))
    finally:
        await conn.close()
    return probed, raw


def _slowest(in_order: list[float], n: int = 8) -> dict[int, int]:
    return {i: round(v * 1000) for i, v in sorted(enumerate(in_order), key=lambda p: -p[1])[:n]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs inserted and then updated through the pipeline")
    parser.add_argument("--probes", type=int, default=100, help="single-row updates timed commit -> searchable")
    parser.add_argument("--rate", type=float, default=5.0, help="at most this many probes per second (one at a time)")
    parser.add_argument(
        "--admin-url",
        default=servers.ADMIN_URL,
        help="PostgreSQL URL allowed to CREATE DATABASE (default: 127.0.0.1:5432 if it answers, else an embedded server started here)",
    )
    parser.add_argument("--elasticsearch-url", default=None)
    parser.add_argument("--bootstrap", default=None, help="Kafka host:port (default: an Apache Kafka broker started here)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rows = list(jobgen.jobs(args.jobs, seed=77))
    start_load = machine.load("start")
    with servers.database(args.admin_url) as url, servers.elasticsearch(args.elasticsearch_url) as es_url, servers.kafka(args.bootstrap) as bootstrap:
        settings = cp_settings.load(
            environ={},
            **{
                "database.url": url,
                "kafka.bootstrap_servers": [bootstrap],
                "kafka.topic_prefix": "bench",
                "search.elasticsearch_url": es_url,
                "search.index_alias": "bench-sync",
                "search.bulk_timeout": 300.0,
            },
        )

        async def run() -> dict[str, typing.Any]:
            conn = await asyncpg.connect(url)
            await conn.executemany(
                "INSERT INTO users (id, name, role) VALUES ($1, $2, 'user') ON CONFLICT DO NOTHING", [(u.id, u.name) for u in jobgen.users()]
            )
            await conn.close()
            es = client.create(settings.search)
            try:
                raw_index = f"{settings.search.index_alias}-raw"
                try:
                    raw_inserts, raw_updates = await raw_bulk(es, settings, rows, raw_index)
                    print(f"raw: inserts {raw_inserts:,.0f} docs/s, updates {raw_updates:,.0f} docs/s", flush=True)
                    result = await pipeline(settings, es, rows, args.probes, args.rate, raw_index)
                finally:
                    await index.delete(es, raw_index)
            finally:
                await es.close()
            return {"raw_insert_docs_per_s": raw_inserts, "raw_update_docs_per_s": raw_updates, **result}

        result = asyncio.run(run())
    end_load = machine.load("end")
    in_order = result.pop("latencies_s")
    latencies = sorted(in_order)
    raw_in_order = result.pop("raw_latencies_s")
    raw_latencies = sorted(raw_in_order)
    target = settings.search.refresh_interval + LATENCY_SLACK
    summary = {
        "jobs": args.jobs,
        "raw_insert_docs_per_s": round(result["raw_insert_docs_per_s"]),
        "raw_update_docs_per_s": round(result["raw_update_docs_per_s"]),
        "pipeline_insert_docs_per_s": round(result["insert_docs_per_s"]),
        "pipeline_update_docs_per_s": round(result["update_docs_per_s"]),
        "insert_ratio_to_raw": round(result["insert_docs_per_s"] / result["raw_insert_docs_per_s"], 2),
        "update_ratio_to_raw": round(result["update_docs_per_s"] / result["raw_update_docs_per_s"], 2),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p95_ms": round(servers.percentile(latencies, 95) * 1000, 1),
        "latency_p99_ms": round(servers.percentile(latencies, 99) * 1000, 1),
        "latency_target_ms": round(target * 1000),
        # The baseline: the same probes written straight to the server.
        "raw_latency_p50_ms": round(statistics.median(raw_latencies) * 1000, 1),
        "raw_latency_p99_ms": round(servers.percentile(raw_latencies, 99) * 1000, 1),
        "consumer": result["consumer"],
        # Where a throughput run's time went: all writes committed, the outbox drained by the relay, all visible.
        "throughput_stages_s": {k: {s: round(v, 1) for s, v in d.items()} for k, d in result["throughput_stages_s"].items()},
        "load_average_start_end": [round(start_load[0], 2), round(end_load[0], 2)],
        # Which probes were slow says whether the tail is a warm-up, a rhythm or noise.
        "slowest_probes_ms": _slowest(in_order),
        "raw_slowest_probes_ms": _slowest(raw_in_order),
        # Where the slowest probes' time went.
        "slowest_probe_stages": {i: result["stages"].get(i) for i in _slowest(in_order, 4)},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    ratio_ok = "met" if summary["update_ratio_to_raw"] >= TARGET_RATIO else "MISSED"
    latency_ok = "met" if summary["latency_p99_ms"] <= summary["latency_target_ms"] else "MISSED"
    print(f"raw async_bulk, inserts: {summary['raw_insert_docs_per_s']:>8,} docs/s ({args.jobs:,} documents)")
    print(f"raw async_bulk, updates: {summary['raw_update_docs_per_s']:>8,} docs/s")
    print(f"pipeline, inserts      : {summary['pipeline_insert_docs_per_s']:>8,} docs/s ({summary['insert_ratio_to_raw']:.0%} of raw inserts)")
    print(
        f"pipeline, updates      : {summary['pipeline_update_docs_per_s']:>8,} docs/s ({summary['update_ratio_to_raw']:.0%} of raw updates; target >= 80 %: {ratio_ok})"
    )
    print(
        f"commit -> searchable   : p50 {summary['latency_p50_ms']} ms, p95 {summary['latency_p95_ms']} ms, p99 {summary['latency_p99_ms']} ms "
        f"(target p99 <= {summary['latency_target_ms']} ms: {latency_ok}; {len(latencies)} probes)"
    )
    print(
        f"  baseline, written raw : p50 {summary['raw_latency_p50_ms']} ms, p99 {summary['raw_latency_p99_ms']} ms "
        f"(pipeline p99 / raw p99 = {summary['latency_p99_ms'] / max(summary['raw_latency_p99_ms'], 0.1):.2f})"
    )
    print(f"slowest probes (n-th: ms): {', '.join(f'{i}: {v}' for i, v in sorted(summary['slowest_probes_ms'].items()))}")
    print(f"slowest raw probes       : {', '.join(f'{i}: {v}' for i, v in sorted(summary['raw_slowest_probes_ms'].items()))}")
    for i, stage in summary["slowest_probe_stages"].items():
        print(f"  probe {i}: {stage}")
    med = (
        {k: statistics.median(s[k] for s in result["stages"].values()) for k in ("relay_ms", "broker_consumer_bulk_ms", "visible_ms")}
        if result["stages"]
        else {}
    )
    print(f"  median stages: {med}")
    print(f"throughput stages (s)  : {summary['throughput_stages_s']} (committed: the writes; relayed: outbox drained; visible: all searchable)")
    print(f"consumer               : {summary['consumer']}")
    print(f"load average (1 min)   : {summary['load_average_start_end'][0]} at the start, {summary['load_average_start_end'][1]} at the end")


if __name__ == "__main__":
    main()
