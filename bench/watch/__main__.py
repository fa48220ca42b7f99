"""``python -m bench.watch``: 1,000 idle blocking reads on one API instance; memory per watcher, CPU at idle, change → answer p99.

Against one API process served as ``a4c-controlplane run`` serves it (the
API alone: no relay or consumers), on a fresh migrated database:

1. ``--watchers`` jobs owned by ``--users`` users; each job gets one watcher,
   ``GET /v1/jobs/{id}?index=N&wait=300s`` from this process (one aiohttp
   connection each), re-asked with the new index after every answer;
2. memory: the API's RSS before the watchers and once its
   ``a4c_watch_waiting`` gauge counts them all, per watcher;
3. CPU at idle: the API process's user + system time over ``--idle`` s with
   every watcher waiting and nothing changing (and the same without watchers);
4. latency: ``--changes`` single-row UPDATEs of a random watched job, one at
   a time, timed from the UPDATE's commit (its acknowledgement here) until
   that job's watcher has the answer (NOTIFY → the instance's LISTEN → the
   waiting request → a hot read → the client); also from just before the
   UPDATE is sent, which adds the UPDATE's own time;
5. fan-out: ``--watchers`` watchers of one job, one change: how soon the
   first and the last of them has its answer (each re-reads the row, through
   the hot-read pool of ``database.pool_size`` connections).

Baselines, same run: a bare aiohttp long poll (bench/watch/bare.py: one
future per waiting request, woken by a POST) for memory, idle CPU and wake
latency; and a plain ``GET /v1/jobs/{id}`` for the latency of one read,
what a poller pays at best, if it happened to ask right after the change.

Verdict: change → answer p99 ≤ 20 ms, and CPU at idle with the watchers
within 0.5 % of a core.
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
import uuid

import aiohttp
import asyncpg
import psutil

from bench import machine
from bench.api_read import __main__ as api_read
from bench.search import servers
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.db import hot
from controlplane.services import users

P99_TARGET_MS = 20.0
IDLE_CPU_TARGET = 0.5  # percent of one core
WAIT = "300s"


async def seed(url: str, user_count: int, job_count: int) -> tuple[list[str], list[tuple[str, int]]]:
    """Users with a token each, and ``job_count`` pending jobs spread over them: (tokens, [(job id, owner's index)])."""
    settings = cp_settings.load(environ={}, **{"database.url": url})
    engine = db_engine.create(settings.database)
    tokens, owners = [], []
    try:
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            for i in range(user_count):
                user = await users.create_user(session, f"watch{i}")
                owners.append((user.id, user.name))
                tokens.append((await users.issue_token(session, user.id)).token)
    finally:
        await engine.dispose()
    jobs = [(str(uuid.uuid4()), i % user_count) for i in range(job_count)]
    conn = await asyncpg.connect(hot.dsn(url))
    try:
        await conn.executemany(
            "INSERT INTO jobs (id, kind, status, source, user_id, user_name, reason) VALUES ($1::uuid, 'image_build', 'queued', 'api', $2, $3, 'bench')",
            [(job, owners[owner][0], owners[owner][1]) for job, owner in jobs],
        )
    finally:
        await conn.close()
    return tokens, jobs


def percentile(values: typing.Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def idle_cpu(process: psutil.Process, seconds: float) -> float:
    """Percent of one core the process used over ``seconds`` of this process doing nothing."""
    before, began = cpu_seconds(process), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(process) - before) / (time.monotonic() - began)


class Watchers:
    """One blocking read per key, re-asked after each answer; ``answered(key)`` is a future for the next answer."""

    def __init__(
        self, http: aiohttp.ClientSession, url_of: typing.Callable[[str, int], str], headers_of: typing.Callable[[str], dict[str, str]]
    ) -> None:
        self._http, self._url_of, self._headers_of = http, url_of, headers_of
        self._next: dict[str, asyncio.Future[float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.failures: dict[int, int] = {}

    def start(self, keys: typing.Iterable[str], index: typing.Mapping[str, int]) -> None:
        self._tasks = [asyncio.create_task(self._watch(key, index.get(key, 0))) for key in keys]

    def answered(self, key: str) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self._next[key] = future
        return future

    async def _watch(self, key: str, index: int) -> None:
        while True:
            async with self._http.get(self._url_of(key, index), headers=self._headers_of(key)) as resp:
                await resp.read()
                arrived = time.perf_counter()
                if resp.status != 200:
                    self.failures[resp.status] = self.failures.get(resp.status, 0) + 1
                    await asyncio.sleep(1)
                    continue
                index = int(resp.headers.get("X-A4C-Index", index))
            future = self._next.pop(key, None)
            if future is not None and not future.done():
                future.set_result(arrived)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def until(check: typing.Callable[[], typing.Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not within {timeout:.0f} s")
        await asyncio.sleep(0.2)


def api_env(url: str, port: int, watchers: int) -> dict[str, str]:
    return {
        **os.environ,
        "A4C_DATABASE__URL": url,
        "A4C_HTTP__HOST": "127.0.0.1",
        "A4C_HTTP__PORT": str(port),
        "A4C_HTTP__MAX_CONNECTIONS": str(watchers + 200),
        "A4C_HTTP__MAX_CONNECTIONS_PER_ADDRESS": "0",
        "A4C_WATCH__PER_INSTANCE": str(watchers + 100),
        "A4C_WATCH__PER_USER": str(watchers),
        "A4C_RATE_LIMIT__ENABLED": "false",
        "A4C_LOGGING__LEVEL": "ERROR",
    }


def run_api(url: str, args: argparse.Namespace) -> dict[str, typing.Any]:
    tokens, jobs = asyncio.run(seed(url, args.users, args.watchers))
    port = api_read.free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bench.api_read.api_server"], env=api_env(url, port, args.watchers))
    try:
        headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
        api_read.wait_answering(f"{base}/v1/me", headers[0])
        result = asyncio.run(measure_api(url, base, psutil.Process(server.pid), headers, jobs, args))
        if server.poll() is not None:
            raise SystemExit(f"the API exited during the run (code {server.returncode})")
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


async def measure_api(
    url: str, base: str, process: psutil.Process, headers: list[dict[str, str]], jobs: list[tuple[str, int]], args: argparse.Namespace
) -> dict[str, typing.Any]:
    owner = dict(jobs)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
        # Every job read once: its index, a warm hot-read pool, and the plain read's latency (the baseline).
        index: dict[str, int] = {}
        plain: list[float] = []
        for job, who in jobs:
            began = time.perf_counter()
            async with http.get(f"{base}/v1/jobs/{job}", headers=headers[who]) as resp:
                await resp.read()
                plain.append(time.perf_counter() - began)
                index[job] = int(resp.headers["X-A4C-Index"])
        rss_before = process.memory_info().rss
        cpu_without = await idle_cpu(process, args.idle)

        async def gauge() -> float:
            async with http.get(f"{base}/metrics") as resp:
                found = re.search(r"^a4c_watch_waiting (\S+)$", await resp.text(), re.M)
                return float(found.group(1)) if found else 0.0

        watchers = Watchers(http, lambda job, i: f"{base}/v1/jobs/{job}?index={i}&wait={WAIT}", lambda job: headers[owner[job]])
        watchers.start([job for job, _ in jobs], index)
        await until(lambda: _at_least(gauge, args.watchers), 120, f"{args.watchers} watchers waiting")
        await asyncio.sleep(2)  # let allocation settle before reading RSS
        rss_with = process.memory_info().rss
        cpu_with = await idle_cpu(process, args.idle)

        latencies, from_send, updates = [], [], []
        conn = await asyncpg.connect(hot.dsn(url))
        try:
            for n in range(args.changes):
                job = random.choice(jobs)[0]
                answered = watchers.answered(job)
                began = time.perf_counter()
                await conn.execute("UPDATE jobs SET reason = $2 WHERE id = $1::uuid", job, f"change {n}")
                committed = time.perf_counter()
                arrived = await asyncio.wait_for(answered, 10)
                # The change is its commit; the NOTIFY may even beat the commit's acknowledgement back here.
                latencies.append(max(0.0, arrived - committed))
                from_send.append(arrived - began)
                updates.append(committed - began)
                await asyncio.sleep(0.01)
        finally:
            await conn.close()
        waiting_after = await gauge()
        await watchers.stop()
        fanout = await fan_out(http, base, url, headers[owner[jobs[0][0]]], jobs[0][0], args.watchers, gauge)
    return {
        "fanout": fanout,
        "rss_before": rss_before,
        "rss_with": rss_with,
        "cpu_without": cpu_without,
        "cpu_with": cpu_with,
        "latencies": latencies,
        "from_send": from_send,
        "updates": updates,
        "plain": plain,
        "failures": watchers.failures,
        "waiting_after": waiting_after,
    }


async def fan_out(
    http: aiohttp.ClientSession,
    base: str,
    url: str,
    headers: dict[str, str],
    job: str,
    count: int,
    gauge: typing.Callable[[], typing.Awaitable[float]],
) -> dict[str, float]:
    """``count`` watchers of one job, one change: seconds from its commit until the first and the last has its answer."""
    async with http.get(f"{base}/v1/jobs/{job}", headers=headers) as resp:
        index = int(resp.headers["X-A4C-Index"])
    arrivals: list[float] = []

    async def one() -> None:
        async with http.get(f"{base}/v1/jobs/{job}?index={index}&wait={WAIT}", headers=headers) as resp:
            await resp.read()
            if resp.status == 200 and int(resp.headers["X-A4C-Index"]) > index:
                arrivals.append(time.perf_counter())

    async def drained() -> bool:
        return await gauge() == 0

    await until(drained, 60, "the earlier watchers gone")
    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await until(lambda: _at_least(gauge, count), 120, f"{count} watchers of one job")
    conn = await asyncpg.connect(hot.dsn(url))
    try:
        await conn.execute("UPDATE jobs SET reason = 'fan out' WHERE id = $1::uuid", job)
        committed = time.perf_counter()
    finally:
        await conn.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return {"answered": len(arrivals), "first_ms": ms(min(arrivals) - committed), "last_ms": ms(max(arrivals) - committed)}


async def _at_least(gauge: typing.Callable[[], typing.Awaitable[float]], count: int) -> bool:
    return await gauge() >= count


def run_bare(args: argparse.Namespace) -> dict[str, typing.Any]:
    port = api_read.free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bench.watch.bare", "--port", str(port)])
    try:
        api_read.wait_answering(f"{base}/count", {})
        return asyncio.run(measure_bare(base, psutil.Process(server.pid), args))
    finally:
        server.terminate()
        server.wait(timeout=30)


async def measure_bare(base: str, process: psutil.Process, args: argparse.Namespace) -> dict[str, typing.Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
        keys = [f"k{i}" for i in range(args.watchers)]
        for key in keys[:200]:  # warm up as the API's plain reads did
            async with http.post(f"{base}/poke/{key}") as resp:
                await resp.read()
        rss_before = process.memory_info().rss
        cpu_without = await idle_cpu(process, args.idle)

        async def counted() -> bool:
            async with http.get(f"{base}/count") as resp:
                return bool((await resp.json())["waiting"] >= args.watchers)

        watchers = Watchers(http, lambda key, _i: f"{base}/wait/{key}?wait=300", lambda _key: {})
        watchers.start(keys, {})
        await until(counted, 120, f"{args.watchers} bare waiters")
        await asyncio.sleep(2)
        rss_with = process.memory_info().rss
        cpu_with = await idle_cpu(process, args.idle)
        latencies = []
        for _ in range(args.changes):
            key = random.choice(keys)
            answered = watchers.answered(key)
            began = time.perf_counter()
            async with http.post(f"{base}/poke/{key}") as resp:
                await resp.read()
            latencies.append(await asyncio.wait_for(answered, 10) - began)
            await asyncio.sleep(0.01)
        await watchers.stop()
    return {"rss_before": rss_before, "rss_with": rss_with, "cpu_without": cpu_without, "cpu_with": cpu_with, "latencies": latencies}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url", default=servers.ADMIN_URL, help="PostgreSQL URL allowed to CREATE DATABASE (default: 127.0.0.1:5432, else embedded)"
    )
    parser.add_argument("--watchers", type=int, default=1000, help="concurrent blocking reads (one job each)")
    parser.add_argument("--users", type=int, default=10, help="users the jobs and watchers belong to")
    parser.add_argument("--changes", type=int, default=1000, help="changes timed, one at a time")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds each idle CPU sample lasts")
    args = parser.parse_args(argv)
    start_load = machine.load("watch start")
    with servers.database(args.admin_url) as url:
        ours = run_api(url, args)
    bare = run_bare(args)
    end_load = machine.load("watch end")

    per_watcher = (ours["rss_with"] - ours["rss_before"]) / args.watchers
    per_bare = (bare["rss_with"] - bare["rss_before"]) / args.watchers
    lat, base_lat, plain = ours["latencies"], bare["latencies"], ours["plain"]
    p99 = percentile(lat, 0.99)
    result = {
        "bench": "watch",
        "watchers": args.watchers,
        "memory_per_watcher_kb": round(per_watcher / 1024, 1),
        "bare_memory_per_waiter_kb": round(per_bare / 1024, 1),
        "memory_ratio": round(per_watcher / per_bare, 2) if per_bare > 0 else None,
        "api_rss_mb": {"before": round(ours["rss_before"] / 1e6, 1), "with_watchers": round(ours["rss_with"] / 1e6, 1)},
        "idle_cpu_percent": {
            "api_with_watchers": round(ours["cpu_with"], 3),
            "api_without": round(ours["cpu_without"], 3),
            "bare_with_waiters": round(bare["cpu_with"], 3),
            "bare_without": round(bare["cpu_without"], 3),
        },
        "change_to_answer_ms": {"p50": ms(statistics.median(lat)), "p99": ms(p99), "max": ms(max(lat)), "n": len(lat)},
        "update_sent_to_answer_ms": {"p50": ms(statistics.median(ours["from_send"])), "p99": ms(percentile(ours["from_send"], 0.99))},
        "update_itself_ms": {"p50": ms(statistics.median(ours["updates"])), "p99": ms(percentile(ours["updates"], 0.99))},
        "bare_poke_to_answer_ms": {"p50": ms(statistics.median(base_lat)), "p99": ms(percentile(base_lat, 0.99))},
        "plain_read_ms": {"p50": ms(statistics.median(plain)), "p99": ms(percentile(plain, 0.99))},
        "p99_ratio_to_plain_read": round(p99 / percentile(plain, 0.99), 2),
        "fan_out_one_job": ours["fanout"],
        "refused_or_failed": ours["failures"],
        "waiting_after": ours["waiting_after"],
        "load": [round(start_load[0], 1), round(end_load[0], 1)],
    }
    met = p99 * 1000 <= P99_TARGET_MS and ours["cpu_with"] <= IDLE_CPU_TARGET and not ours["failures"]
    result["verdict"] = "met" if met else "missed"
    print(
        f"{args.watchers} watchers: {result['memory_per_watcher_kb']} KB each (bare aiohttp long poll {result['bare_memory_per_waiter_kb']} KB, "
        f"×{result['memory_ratio']}); API RSS {result['api_rss_mb']['before']} → {result['api_rss_mb']['with_watchers']} MB"
    )
    cpu = result["idle_cpu_percent"]
    print(
        f"idle CPU over {args.idle:g} s: API {cpu['api_with_watchers']} % of a core with the watchers, {cpu['api_without']} % without; "
        f"bare {cpu['bare_with_waiters']} % / {cpu['bare_without']} % (target ≤ {IDLE_CPU_TARGET} %)"
    )
    c, b, p = result["change_to_answer_ms"], result["bare_poke_to_answer_ms"], result["plain_read_ms"]
    print(
        f"change → answer: p50 {c['p50']} ms, p99 {c['p99']} ms, max {c['max']} ms over {c['n']} changes (target p99 ≤ {P99_TARGET_MS:g} ms); "
        f"bare poke → answer p50 {b['p50']} / p99 {b['p99']} ms; one plain read p50 {p['p50']} / p99 {p['p99']} ms"
    )
    u, us = result["update_sent_to_answer_ms"], result["update_itself_ms"]
    print(
        f"  from the UPDATE's send instead of its commit: p50 {u['p50']} / p99 {u['p99']} ms (the UPDATE and commit alone: p50 {us['p50']} / p99 {us['p99']} ms)"
    )
    f = result["fan_out_one_job"]
    print(
        f"{args.watchers} watchers of one job, one change: {f['answered']} answered, the first {f['first_ms']} ms and the last {f['last_ms']} ms after the commit"
    )
    print("verdict: " + result["verdict"])
    print(json.dumps(result))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
