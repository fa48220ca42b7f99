"""``python -m bench.create_e2e.inprocess``: the accept step (``POST /v1/workspaces`` → 202) against the API alone, in one process.

No Kafka, agent or Docker: the control plane's API (no background workers)
on a throwaway database with one roomy host, and an aiohttp client in the
same process. It reports per POST the wall time, and the process's CPU for
one POST plus one ``GET /v1/me`` (client and API together; less moved by
other work on the machine than wall time), with ``GET /v1/me`` alone as the
baseline. ``--profile`` prints where the POSTs' CPU goes (cProfile, sorted by
own time). This is the ad-hoc in-process measurement of docs/benchmarks.md's
accept-step sections, kept so that before/after pairs can be rerun.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import decimal
import io
import os
import pstats
import resource
import statistics
import time
import uuid

import aiohttp

from bench.api_read import database
from controlplane import settings as cp_settings
from controlplane.api import app as api_app
from controlplane.api import listener
from controlplane.db import engine as db_engine
from controlplane.db import models
from controlplane.services import users
from shared import eventloop, signing

GIB = 1024**3


async def _seed(settings: cp_settings.Settings) -> str:
    """One host with room for every POST of the run, and a user; returns the user's token."""
    engine = db_engine.create(settings.database)
    try:
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            now = datetime.datetime.now(datetime.UTC)
            session.add(
                models.Host(
                    id=uuid.uuid4(),
                    name="bench-host",
                    status=models.HostStatus.ACTIVE,
                    cordoned=False,
                    labels={},
                    signing_key=signing.new_key(),
                    agent_version="bench",
                    capacity_cpus=decimal.Decimal(100_000),
                    capacity_memory_mb=10**9,
                    capacity_disk_bytes=10**6 * GIB,
                    disk_total_bytes=10**6 * GIB,
                    disk_used_bytes=GIB,
                    disk_reported_at=now,
                    last_heartbeat_at=now + datetime.timedelta(days=1),  # fresh for the whole run
                    last_event_seq=0,
                )
            )
            user = await users.create_user(session, "bench")
            return (await users.issue_token(session, user.id)).token
    finally:
        await engine.dispose()


async def run(url: str, posts: int, warmup: int, profile: bool, sort: str = "tottime", pause: float = 0.0) -> None:
    settings = cp_settings.load(environ={}, **{"database.url": url, "http.host": "127.0.0.1", "http.port": 0, "rate_limit.enabled": False})
    token = await _seed(settings)
    app = api_app.init_app(settings)
    runner = listener.runner(app, settings.http, shutdown_timeout=1)
    await runner.setup()
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: a send that wakes PostgreSQL on this core waits
    try:
        site = await listener.start(runner, settings.http, host="127.0.0.1", port=0)
        base = f"http://127.0.0.1:{site.port}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

            async def post(i: int) -> float:
                body = {"name": f"w{i}", "image_ref": "debian:12", "cpus": 0.5, "memory_mb": 256, "disk_gb": 1}
                started = time.perf_counter()
                async with http.post(f"{base}/v1/workspaces", json=body) as resp:
                    await resp.read()
                took = time.perf_counter() - started
                assert resp.status == 202, resp.status
                return took

            async def me() -> float:
                started = time.perf_counter()
                async with http.get(f"{base}/v1/me") as resp:
                    await resp.read()
                assert resp.status == 200, resp.status
                return time.perf_counter() - started

            for i in range(warmup):
                await post(-1 - i)
                await me()
            walls, mes = [], []
            cpu = time.process_time()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            if profile:
                profiler.enable()
            for i in range(posts):
                if pause:
                    await asyncio.sleep(pause)  # the machine idles, as between the full stack's rounds
                walls.append(await post(i))
                if pause:
                    await asyncio.sleep(pause)
                mes.append(await me())
            profiler.disable()
            cpu = time.process_time() - cpu
            after = resource.getrusage(resource.RUSAGE_SELF)
            user, system = after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime
            cpu_me = time.process_time()
            for _ in range(posts):
                await me()
            cpu_me = time.process_time() - cpu_me
    finally:
        await runner.cleanup()
    load = os.getloadavg()[0]
    print(
        f"{posts} POSTs: median {statistics.median(walls) * 1000:.2f} ms, p90 {statistics.quantiles(walls, n=10)[-1] * 1000:.2f} ms;"
        f" GET /v1/me median {statistics.median(mes) * 1000:.2f} ms;"
        f" CPU per POST + GET /v1/me {cpu / posts * 1000:.2f} ms (user {user / posts * 1000:.2f}, system {system / posts * 1000:.2f}), per GET /v1/me alone {cpu_me / posts * 1000:.2f} ms;"
        f" load {load:.2f}"
    )
    if profile:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(60)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="cProfile the measured POSTs (inflates their times)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds idle before each POST and each GET /v1/me (the full stack's quiet wait lets the cores idle; 0: back to back)",
    )
    parser.add_argument("--sort", default="tottime", help="cProfile's order (tottime, cumulative)")
    parser.add_argument("--admin-url", default=None, help="a PostgreSQL admin URL (bench/postgres.py picks one otherwise)")
    parser.add_argument("--loop", choices=eventloop.CHOICES, default="uvloop", help="the event loop the API and its client run on")
    args = parser.parse_args()
    with database.temporary(args.admin_url, prefix="a4c_bench_accept") as url:
        eventloop.run(run(url, args.posts, args.warmup, args.profile, args.sort, args.pause), args.loop)


if __name__ == "__main__":
    main()
