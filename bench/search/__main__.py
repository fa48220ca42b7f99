"""``python -m bench.search``: search latency on a million jobs, Elasticsearch vs the PostgreSQL fallback.

1. generate ``--rows`` jobs (skewed statuses, kinds, hosts and users; realistic
   error texts and log tails; ``tests/harness/jobgen.py``) and load them with
   COPY, streamed in chunks (the job-sync trigger is off while loading: the
   index is filled by ``search reindex`` instead, which is measured too);
2. run a mix of filtered, faceted and full-text queries (each as the
   dashboard's first page: 50 hits, and facets where marked) ``--iterations``
   times on each backend, through ``service.search`` (with Elasticsearch
   configured, and without: the fallback path with its bounded counting);
3. print p50/p95/p99 per backend and per kind of query, against the targets
   (p95 <= 50 ms on Elasticsearch, <= 150 ms on PostgreSQL).

Everything runs on this machine: the local PostgreSQL (or the harness's
embedded one when nothing answers on 127.0.0.1:5432) and a real Elasticsearch
8.19 node built from Maven Central's jars, heap ``--es-heap`` (or
``--elasticsearch-url``). By default both backends are measured on all
``--rows`` jobs; ``--es-rows`` measures both on fewer and then the PostgreSQL
fallback alone on ``--rows``. Every phase prints its wall time and the load
average, so a run on a shared machine says what else was happening.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import statistics
import time
import typing
import uuid

import asyncpg

from bench import machine
from bench.search import servers
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.db import models
from controlplane.search import client, reindex, service
from controlplane.search.domain import grammar
from controlplane.services import access
from tests.harness import jobgen

TARGET_P95_MS = {"elasticsearch": 50.0, "postgresql": 150.0}
CHUNK = 50_000
COPIERS = 2

# (kind, search-box text, facets?, as user alice instead of an admin?)
QUERIES: list[tuple[str, str, bool, bool]] = [
    ("filtered", "", False, False),
    ("filtered", "status:failed", False, False),
    ("filtered", "host:h07", False, False),
    ("filtered", "user:grace kind:image_build", False, False),
    ("filtered", "created>=2025-02-20 status:running", False, False),
    ("filtered", "-status:succeeded host:h03", False, False),
    ("filtered", "image:rust-dev sort:-updated_at", False, False),
    ("filtered", "finished>=2025-02-25 sort:finished_at", False, False),
    ("filtered", "kind:workspace_create", False, True),
    ("faceted", "", True, False),
    ("faceted", "status:failed", True, False),
    ("faceted", "host:h02", True, False),
    ("faceted", "since:7d", True, False),
    ("faceted", "kind:image_build status:failed", True, False),
    ("faceted", "created>=2025-02-01 created<2025-02-08", True, False),
    ("faceted", "", True, True),
    ("full-text", '"no space left"', True, False),
    ("full-text", "oomkilled", True, False),
    ("full-text", '"connection refused" host:h01', True, False),
    ("full-text", "manifest unknown", True, False),
    ("full-text", '"could not resolve host"', True, False),
    ("full-text", "numpy status:failed", True, False),
    ("full-text", "ERESOLVE", False, False),
    ("full-text", '"no space left"', True, True),
]


SPAN = datetime.timedelta(days=90)


def _chunk(seed: int, size: int, part: int, parts: int) -> list[tuple]:
    """Chunk ``part`` of ``parts``: its slice of the 90 days before jobgen.BASE, in creation order."""
    start = jobgen.BASE - SPAN + SPAN * part / parts
    return list(jobgen.jobs(size, seed=seed, window=(start, start + SPAN / parts)))


async def load(url: str, rows: int, *, first_seed: int = 2025) -> float:
    """Generate and COPY ``rows`` jobs; returns seconds, generation and index builds included.

    Loading a million rows the way a restore would: secondary indexes are
    dropped and rebuilt after the COPY (one sort each instead of a million
    inserts into eleven trees), the next chunk is generated in another process
    while this one is copied, and the job-sync trigger is off (the index is
    built by ``search reindex`` afterwards, not from a million outbox rows).
    """
    conn = await asyncpg.connect(url)
    loop = asyncio.get_running_loop()
    try:
        await conn.executemany(
            "INSERT INTO users (id, name, role) VALUES ($1, $2, 'user') ON CONFLICT DO NOTHING", [(u.id, u.name) for u in jobgen.users()]
        )
        began = time.perf_counter()
        indexes = await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_index x ON x.indexrelid = CAST(i.indexname AS regclass) "
            "WHERE i.tablename = 'jobs' AND NOT x.indisunique"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        sizes = [min(CHUNK, rows - start) for start in range(0, rows, CHUNK)]
        chunks: asyncio.Queue[list[tuple] | None] = asyncio.Queue(maxsize=2)  # bounded memory

        async def generate() -> None:
            with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
                for n, size in enumerate(sizes):
                    await chunks.put(await loop.run_in_executor(pool, _chunk, first_seed + n, size, n, len(sizes)))
            for _ in range(COPIERS):
                await chunks.put(None)

        async def copy() -> None:
            # Two COPY sessions: the generated tsvector column is computed by
            # the server per row, so a second backend uses the second core.
            target = await asyncpg.connect(url)
            try:
                await target.execute("SET session_replication_role = replica")  # no job-sync trigger in this session
                while (chunk := await chunks.get()) is not None:
                    await target.copy_records_to_table("jobs", records=chunk, columns=list(jobgen.COLUMNS))
            finally:
                await target.close()

        await asyncio.gather(generate(), *(copy() for _ in range(COPIERS)))
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for index in indexes:
            await conn.execute(index["indexdef"])
        await conn.execute("VACUUM ANALYZE jobs")
        return time.perf_counter() - began
    finally:
        await conn.close()


async def measure(settings: cp_settings.Settings, iterations: int, backends: tuple[str, ...], profile: int = 0) -> dict[str, typing.Any]:
    """Each query through ``service.search``, on a Backends with Elasticsearch and on one without (the fallback path)."""
    engine = db_engine.create(settings.database)
    with_es = service.Backends.create(settings, primary=engine)
    without = service.Backends.create(
        settings.model_copy(update={"search": settings.search.model_copy(update={"elasticsearch_url": None})}), primary=engine
    )
    paths = {"elasticsearch": with_es, "postgresql": without}
    people = {u.name: u.id for u in jobgen.users()}
    admin = access.Principal(uuid.uuid4(), "bench", models.Role.ADMIN)
    alice = access.Principal(people["alice"], "alice", models.Role.USER)
    now = jobgen.BASE
    timings: dict[tuple[str, str], list[float]] = {}
    # Where an Elasticsearch answer's time goes: the server's own "took" (ms) of each timed search,
    # against the wall time through service.search (client, HTTP, JSON, building the result).
    took: list[float] = []
    requests_by_label: dict[str, dict[str, typing.Any]] = {}
    label = ""
    if with_es.es is not None:
        plain_search = with_es.es.search

        async def search_noting_took(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            response = await plain_search(*args, **kwargs)
            took.append(float(response.body.get("took", 0)))
            requests_by_label[label] = kwargs
            return response

        with_es.es.search = search_noting_took  # type: ignore[method-assign]
    try:
        for kind, text, facets, as_user in QUERIES:
            q = grammar.parse(text, now=now)
            who = alice if as_user else admin
            label = f"q:{text or '(all)'}{' +facets' if facets else ''}{' (as alice)' if as_user else ''}"

            async def run(name: str) -> None:
                found = await service.search(paths[name], q, who, limit=50, facets=facets, now=now)
                assert found.backend == name, f"{name} did not answer: {found.backend}"

            for name in backends:
                await run(name)  # warm caches and the connection pool once
            for _ in range(iterations):
                for name in backends:
                    began = time.perf_counter()
                    await run(name)
                    ms = (time.perf_counter() - began) * 1000
                    timings.setdefault((name, kind), []).append(ms)
                    timings.setdefault((name, label), []).append(ms)
                    if name == "elasticsearch":
                        timings.setdefault((name, f"took:{kind}"), []).append(took[-1])
                        timings.setdefault((name, "took:all"), []).append(took[-1])
        if profile and "elasticsearch" in backends:
            slowest = sorted(
                ((servers.percentile(v, 95), k[1][2:]) for k, v in timings.items() if k[0] == "elasticsearch" and k[1].startswith("q:")),
                reverse=True,
            )[:profile]
            for _, text in slowest:
                await _profile(plain_search, text, requests_by_label[f"q:{text}"])
    finally:
        await with_es.close()
        await without.close()
        await engine.dispose()
    report: dict[str, typing.Any] = {}
    for backend in backends:
        every = [ms for (name, kind), values in timings.items() if name == backend and not kind.startswith(("q:", "took:")) for ms in values]
        report[backend] = {"all": _summary(every), **{kind: _summary(v) for (name, kind), v in timings.items() if name == backend}}
    return report


async def _profile(search: typing.Callable[..., typing.Awaitable[typing.Any]], text: str, request: dict[str, typing.Any]) -> None:
    """Elasticsearch's own account of one query (the profile API): query, collectors and aggregations, in ms."""
    timed = []
    for _ in range(3):  # the last of three: warm, like the measured runs
        began = time.perf_counter()
        response = await search(**request, profile=True)
        timed.append((time.perf_counter() - began) * 1000)
    print(f"\nprofile of {text}: took {response.body['took']} ms (wall {timed[-1]:.0f} ms, with profiling)", flush=True)
    ms = lambda node: node["time_in_nanos"] / 1e6  # noqa: E731
    for shard in response.body["profile"]["shards"]:
        for search_part in shard["searches"]:
            for node in search_part["query"]:
                breakdown = {k: round(v / 1e6, 1) for k, v in node["breakdown"].items() if not k.endswith("_count") and v > 1e6}
                print(f"  query {node['type']} {ms(node):.1f} ms {breakdown} — {node['description'][:120]}")
            for collector in search_part["collector"]:

                def walk(c: dict[str, typing.Any], depth: int) -> None:
                    print(f"  {'  ' * depth}collector {c['name']} ({c['reason']}) {ms(c):.1f} ms")
                    for child in c.get("children", []):
                        walk(child, depth + 1)

                walk(collector, 0)
        for agg in shard.get("aggregations", []):
            print(f"  aggregation {agg['description']} ({agg['type']}) {ms(agg):.1f} ms")
        print(f"  fetch {shard.get('fetch', {}).get('time_in_nanos', 0) / 1e6:.1f} ms")


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 1),
        "p95_ms": round(servers.percentile(values, 95), 1),
        "p99_ms": round(servers.percentile(values, 99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="jobs in PostgreSQL for the final PostgreSQL run")
    parser.add_argument(
        "--es-rows",
        type=int,
        default=None,
        help="jobs for the side-by-side run on both backends (default: --rows); the PostgreSQL fallback alone then runs on --rows",
    )
    parser.add_argument("--iterations", type=int, default=20, help="timed runs of each query on each backend")
    parser.add_argument(
        "--admin-url",
        default=servers.ADMIN_URL,
        help="PostgreSQL URL allowed to CREATE DATABASE (default: 127.0.0.1:5432 if it answers, else an embedded server started here)",
    )
    parser.add_argument("--elasticsearch-url", default=None, help="an Elasticsearch 8 cluster instead of the node started here")
    parser.add_argument("--es-heap", default=servers.ES_HEAP, help="heap of the Elasticsearch node started here")
    parser.add_argument("--profile", type=int, default=0, help="after measuring, show Elasticsearch's profile of the N slowest queries")
    parser.add_argument("--json", action="store_true", help="print the full reports as JSON")
    args = parser.parse_args()
    es_rows = min(args.rows, args.es_rows or args.rows)
    start_load = machine.load("start")

    reports = []
    with servers.database(args.admin_url) as url, servers.elasticsearch(args.elasticsearch_url, args.es_heap) as es_url:
        settings = cp_settings.load(
            environ={},
            **{
                "database.url": url,
                "search.elasticsearch_url": es_url,
                "search.index_alias": "bench-jobs",
                "search.reindex_batch": 2000,
                "search.request_timeout": 300.0,
                "search.bulk_timeout": 300.0,
            },
        )
        seconds = asyncio.run(load(url, es_rows))
        print(f"loaded {es_rows:,} jobs with COPY in {seconds:.1f} s ({es_rows / seconds:,.0f} rows/s, generation and index builds included)")
        began = time.perf_counter()
        done = asyncio.run(_reindex(settings))
        took = time.perf_counter() - began
        print(f"search reindex: {done.index_live:,} documents in {took:.1f} s ({done.backfilled / took:,.0f} docs/s, verification included)")
        machine.load("queries on both backends")
        reports.append((es_rows, asyncio.run(measure(settings, args.iterations, ("elasticsearch", "postgresql"), args.profile))))
        if args.rows > es_rows:
            more = args.rows - es_rows
            seconds = asyncio.run(load(url, more, first_seed=9000))
            print(f"loaded {more:,} more jobs with COPY in {seconds:.1f} s ({more / seconds:,.0f} rows/s)")
            reports.append((args.rows, asyncio.run(measure(settings, args.iterations, ("postgresql",)))))
    end_load = machine.load("end")
    if args.json:
        print(json.dumps([{"rows": rows, **report} for rows, report in reports], indent=2))
    print(f"load average (1 min) at the start {start_load[0]:.2f}, at the end {end_load[0]:.2f}")
    for rows, report in reports:
        for backend, summary in report.items():
            print(f"\n{backend} on {rows:,} jobs: target p95 <= {TARGET_P95_MS[backend]:.0f} ms")
            if backend == "elasticsearch":
                print("  (indented: Elasticsearch's own 'took' of the same requests, the server's share of the time)")
            for kind, s in summary.items():
                if kind.startswith("q:"):
                    continue
                if kind.startswith("took:"):
                    kind = f"  {kind[5:]}"  # the server's own share
                verdict = ("met" if s["p95_ms"] <= TARGET_P95_MS[backend] else "MISSED") if kind == "all" else ""
                print(f"  {kind:10} n={s['n']:4}  p50 {s['p50_ms']:8.1f} ms  p95 {s['p95_ms']:8.1f} ms  p99 {s['p99_ms']:8.1f} ms  {verdict}")
            slowest = sorted(((s["p95_ms"], k[2:]) for k, s in summary.items() if k.startswith("q:")), reverse=True)[:6]
            print("  slowest p95: " + "; ".join(f"{text} {ms:.0f} ms" for ms, text in slowest))


async def _reindex(settings: cp_settings.Settings) -> reindex.Report:
    engine = db_engine.create(settings.database)
    es = client.create(settings.search)
    began, done, shown = time.perf_counter(), {"n": 0}, {"n": 0}

    async def progress(phase: str, rows: int) -> None:
        done["n"] += rows
        if done["n"] - shown["n"] >= 100_000:
            shown["n"] = done["n"]
            took = time.perf_counter() - began
            machine.load(f"reindex {phase}: {done['n']:,} documents in {took:.0f} s ({done['n'] / took:,.0f} docs/s)")

    try:
        return await reindex.reindex(settings, engine, es, on_page=progress)
    finally:
        await es.close()
        await engine.dispose()


if __name__ == "__main__":
    main()
