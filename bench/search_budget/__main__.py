"""``python -m bench.search_budget``: maximal searches on the PostgreSQL fallback vs another user's /v1/me, and RSS.

Before search budgets, one search of ~1,550 terms cost seconds of event-loop time,
8 in parallel pushed another user's ``/v1/me`` from 3 ms to 3.8 s median, and
every new statement shape kept ~29 MB. Now a query has at most
``search.max_terms`` terms and ``search.max_query_length`` characters, and
one SQL text per shape. This measures, against the same API process:

1. baseline: another user's ``GET /v1/me`` latency with no search running;
2. the same while ``--parallel`` clients run maximal searches, ``--rate``
   per second each as in the report (``0``: back to back), each query
   different (``search.max_terms`` common words and phrases), as a ratio to
   the baseline; target p99 < 50 ms;
3. the API's RSS after a warm-up and after ``--queries`` more distinct
   maximal searches; target: growth under 5 % of the warmed-up RSS.

The API runs as ``a4c-controlplane`` would serve it (``bench/api_read/api_server.py``),
without Elasticsearch, on a throwaway database with ``--rows`` generated jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import typing

import aiohttp
import asyncpg
import psutil

from bench.api_read import __main__ as api_read
from bench.search import servers
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.search.domain import query as query_mod
from controlplane.services import users
from tests.harness import jobgen

TARGET_ME_P99_MS = 50.0
TARGET_RSS_GROWTH = 0.05
PHRASES = ('"no such host"', '"is not a directory"', '"not found"', '"no space left on device"', '"connection refused"')
# Words the generated logs are made of: a hostile query picks words that match, so every term has a posting list to read.
VOCABULARY = sorted({w.lower() for t in jobgen.ERRORS + jobgen.LOG_LINES for w in re.findall(r"[A-Za-z]{3,}", re.sub(r"\{\w+\}", " ", t))})


def maximal(rng: random.Random, limits: query_mod.Limits) -> str:
    """A ``q`` at the limits: the most terms allowed, words and phrases, within the allowed length."""
    terms = list(PHRASES) + rng.sample(VOCABULARY, min(len(VOCABULARY), limits.max_terms - len(PHRASES)))
    terms += [f"x{rng.getrandbits(40):010x}" for _ in range(limits.max_terms - len(terms))]  # pad with distinct words
    rng.shuffle(terms)
    text = " ".join(terms)
    while len(text) > limits.max_length:
        terms.pop()
        text = " ".join(terms)
    return text


async def seed(url: str, rows: int) -> dict[str, str]:
    """Generated jobs, and tokens of alice (who searches) and bob (who only asks /v1/me)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany("INSERT INTO users (id, name, role) VALUES ($1, $2, 'user')", [(u.id, u.name) for u in jobgen.users()])
        jobs = list(jobgen.jobs(rows, seed=13))
        for start in range(0, len(jobs), 20_000):
            await conn.copy_records_to_table("jobs", records=jobs[start : start + 20_000], columns=list(jobgen.COLUMNS))
        await conn.execute("VACUUM ANALYZE jobs")
    finally:
        await conn.close()
    engine = db_engine.create(cp_settings.load(environ={}, **{"database.url": url}).database)
    people = {u.name: u.id for u in jobgen.users()}
    try:
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            return {name: (await users.issue_token(session, people[name], name="bench")).token for name in ("alice", "bob")}
    finally:
        await engine.dispose()


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(servers.percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


async def watch_me(http: aiohttp.ClientSession, base: str, token: str, seconds: float) -> list[float]:
    """Another user's /v1/me, one request every 20 ms, for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        async with http.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        latencies.append(time.perf_counter() - began)
        await asyncio.sleep(0.02)
    return latencies


async def search(http: aiohttp.ClientSession, base: str, token: str, q: str) -> float:
    began = time.perf_counter()
    async with http.get(f"{base}/v1/jobs/search", params={"q": q, "limit": "50"}, headers={"Authorization": f"Bearer {token}"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return time.perf_counter() - began


async def run(base: str, tokens: dict[str, str], api: psutil.Process, args: argparse.Namespace) -> dict[str, typing.Any]:
    limits = query_mod.Limits(**{k: v for k, v in (("max_terms", args.max_terms), ("max_length", args.max_length)) if v})
    rng = random.Random(1)
    report: dict[str, typing.Any] = {"max_terms": limits.max_terms, "max_length": limits.max_length}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.parallel + 4)) as http:
        for _ in range(20):  # warm-up: pools, caches, the first compilation
            await search(http, base, tokens["alice"], maximal(rng, limits))
        await watch_me(http, base, tokens["bob"], 2)
        baseline = await watch_me(http, base, tokens["bob"], args.seconds)

        searches: list[float] = []
        stop = asyncio.Event()

        async def searcher() -> None:
            if args.rate:
                await asyncio.sleep(rng.random() / args.rate)  # independent clients, not in lockstep
            while not stop.is_set():
                began = time.perf_counter()
                searches.append(await search(http, base, tokens["alice"], maximal(rng, limits)))
                if args.rate:
                    await asyncio.sleep(max(0.0, 1 / args.rate - (time.perf_counter() - began)))

        workers = [asyncio.create_task(searcher()) for _ in range(args.parallel)]
        loaded = await watch_me(http, base, tokens["bob"], args.seconds)
        stop.set()
        await asyncio.gather(*workers)
        report["me_baseline"], report["me_under_search"], report["searches"] = _summary(baseline), _summary(loaded), _summary(searches)

        rss_before = api.memory_info().rss
        for _ in range(args.queries // args.parallel):
            await asyncio.gather(*(search(http, base, tokens["alice"], maximal(rng, limits)) for _ in range(args.parallel)))
        rss_after = api.memory_info().rss
        report["rss_mb"] = {
            "warm": round(rss_before / 2**20, 1),
            "after": round(rss_after / 2**20, 1),
            "queries": args.queries // args.parallel * args.parallel,
        }
    return report


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_budget", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url",
        default=servers.ADMIN_URL,
        help="PostgreSQL URL allowed to CREATE DATABASE (default: 127.0.0.1:5432 if it answers, else an embedded server started here)",
    )
    parser.add_argument("--rows", type=int, default=50_000, help="generated jobs in the database")
    parser.add_argument("--parallel", type=int, default=8, help="clients searching at once")
    parser.add_argument("--rate", type=float, default=1.0, help="searches per second per client (the report's 1/s); 0 = back to back")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the baseline and of the loaded run")
    parser.add_argument("--queries", type=int, default=200, help="distinct maximal searches for the RSS measurement")
    parser.add_argument("--max-terms", type=int, default=None, help="search.max_terms for the API (default: the setting's)")
    parser.add_argument("--max-length", type=int, default=None, help="search.max_query_length for the API (default: the setting's)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    with servers.database(args.admin_url) as url:
        tokens = asyncio.run(seed(url, args.rows))
        port = api_read.free_port()
        env = {
            **os.environ,
            "A4C_DATABASE__URL": url,
            "A4C_HTTP__PORT": str(port),
            "A4C_RATE_LIMIT__ENABLED": "false",
            "A4C_LOGGING__LEVEL": "WARNING",
        }
        if args.max_terms:
            env["A4C_SEARCH__MAX_TERMS"] = str(args.max_terms)
        if args.max_length:
            env["A4C_SEARCH__MAX_QUERY_LENGTH"] = str(args.max_length)
        server = subprocess.Popen([sys.executable, "-m", "bench.api_read.api_server"], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            api_read.wait_answering(f"{base}/v1/me", {"Authorization": f"Bearer {tokens['bob']}"})
            report = asyncio.run(run(base, tokens, psutil.Process(server.pid), args))
        finally:
            server.terminate()
            server.wait(timeout=20)
    base_p99, loaded_p99 = report["me_baseline"]["p99_ms"], report["me_under_search"]["p99_ms"]
    rss = report["rss_mb"]
    growth = (rss["after"] - rss["warm"]) / rss["warm"]
    print(f"{args.rows:,} jobs; maximal q = {report['max_terms']} terms, <= {report['max_length']} characters; PostgreSQL fallback")
    print(
        f"/v1/me (bob), no search:          p50 {report['me_baseline']['p50_ms']:7.1f} ms  p99 {base_p99:7.1f} ms  (n={report['me_baseline']['n']})"
    )
    pace = f"{args.rate:g}/s each" if args.rate else "back to back"
    print(f"searchers: {args.parallel} clients, {pace}")
    print(
        f"/v1/me (bob), {args.parallel} maximal searches: p50 {report['me_under_search']['p50_ms']:7.1f} ms  p99 {loaded_p99:7.1f} ms  "
        f"(x{loaded_p99 / base_p99:.1f} the baseline; target p99 < {TARGET_ME_P99_MS:.0f} ms: {'met' if loaded_p99 < TARGET_ME_P99_MS else 'MISSED'})"
    )
    s = report["searches"]
    print(f"the searches themselves:          p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  (n={s['n']})")
    print(
        f"API RSS: {rss['warm']:.1f} MB warmed up -> {rss['after']:.1f} MB after {rss['queries']} more distinct maximal searches "
        f"(x{rss['after'] / rss['warm']:.3f}; target growth < {TARGET_RSS_GROWTH:.0%}: {'met' if growth < TARGET_RSS_GROWTH else 'MISSED'})"
    )
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
