"""``python -m bench.api_read``: GET /v1/workspaces/{id} vs a hello-world handler, same machine, same run."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import pathlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing
import urllib.parse
import urllib.request

import aiohttp
import psutil

from bench.api_read import database
from bench.api_read import profile as profiling
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.services import access, users, workspaces
from shared import eventloop
from tests.harness import postgres_server

# Issue 18: at least this share of hello world's throughput at 32 connections, p99 at most 20 ms,
# and at most three times hello world's server CPU per request.
TARGET_RATIO = 0.35
TARGET_P99_MS = 20.0
TARGET_CPU_RATIO = 3.0


@dataclasses.dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = 0.0  # server CPU per request: robust to other load on the machine, unlike req/s
    sys_us: float = 0.0  # the kernel's part of it (socket sends and receives, wake-ups)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answering(url: str, headers: dict[str, str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


async def seed(url: str, count: int = 1) -> tuple[str, list[str]]:
    """A user, their token, and ``count`` (pending) workspaces to read; returns (token, workspace ids)."""
    settings = cp_settings.load(environ={}, **{"database.url": url})
    engine = db_engine.create(settings.database)
    try:
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            user = await users.create_user(session, "bench")
            token = (await users.issue_token(session, user.id)).token
            principal = access.Principal(user.id, user.name, user.role)
            ids = []
            for n in range(count):
                new = workspaces.NewWorkspace(name=f"bench-{n}", cpus=1, memory_mb=512, disk_gb=1, image_ref="debian:12", env={"A": "1"})
                ids.append(str((await workspaces.create_workspace(session, principal, new, settings)).workspace.id))
        return token, ids
    finally:
        await engine.dispose()


def _find(pattern: str, text: str) -> re.Match[str]:
    found = re.search(pattern, text, re.M)
    if found is None:
        raise SystemExit(f"wrk's report has no line matching {pattern!r}:\n{text}")
    return found


def _rotation(paths: typing.Sequence[str]) -> str:
    """A wrk script asking ``paths`` in turn, one per request."""
    listed = ", ".join(json.dumps(p) for p in paths)
    return f"local paths = {{{listed}}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n"


def load_wrk(url: str, headers: dict[str, str], seconds: float, connections: int, paths: typing.Sequence[str] = ()) -> Result:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if len(paths) > 1:
            script.write(_rotation(paths))
            script.flush()
            argv += ["-s", script.name]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def percentile(p: str) -> float:
        value, unit = _find(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(url, rps, percentile("50"), percentile("99"), int(errors.group(1)) if errors else 0)


async def _load_aiohttp(url: str, headers: dict[str, str], seconds: float, connections: int, paths: typing.Sequence[str] = ()) -> Result:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    base = url.split("/", 3)
    urls = [f"{base[0]}//{base[2]}{p}" for p in paths] if len(paths) > 1 else [url]

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(urls[len(latencies) % len(urls)], headers=headers) as resp:
                await resp.read()
                errors += resp.status != 200
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return Result(url, len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000, errors)


def load(
    url: str, headers: dict[str, str], seconds: float, connections: int, server: psutil.Process | None = None, paths: typing.Sequence[str] = ()
) -> Result:
    """``paths``: more than one, asked in turn on ``url``'s server instead of ``url``'s own."""
    before = server.cpu_times() if server else None
    if shutil.which("wrk"):
        result = load_wrk(url, headers, seconds, connections, paths)
    else:
        result = asyncio.run(_load_aiohttp(url, headers, seconds, connections, paths))
    if server is not None and before is not None and result.rps:
        after = server.cpu_times()
        answered = result.rps * seconds
        result.cpu_us = (after.user + after.system - before.user - before.system) / answered * 1e6
        result.sys_us = (after.system - before.system) / answered * 1e6
    return result


def _profile(pid: int, url: str, headers: dict[str, str], seconds: float, connections: int, n: int, paths: typing.Sequence[str]) -> str:
    if profiling.executable() is None:
        return "py-spy is not installed (pip install py-spy)"
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "api.raw"
        loader = threading.Thread(target=load, args=(url, headers, seconds + 1, connections, None, paths))
        loader.start()
        try:
            profiling.record(pid, seconds, out)
        finally:
            loader.join()
        return profiling.report(profiling.top(out.read_text().splitlines(), n))


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--admin-url",
        default=database.DEFAULT_ADMIN_URL,
        help="PostgreSQL URL allowed to CREATE DATABASE (default: 127.0.0.1:5432 if it answers, else an embedded server started here)",
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--loop", choices=eventloop.CHOICES, default="uvloop", help="event loop of BOTH servers, so the ratios stay same-loop (issue 18)"
    )
    parser.add_argument(
        "--workspaces",
        type=int,
        default=1,
        help="read this many workspaces in turn (default 1, as the issue's figures): with more, concurrent reads are of "
        "different rows, so a statement of one loop turn carries distinct keys (controlplane/db/coalesce.py)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternate the two servers this many times; best round counts")
    parser.add_argument(
        "--pg-transport",
        choices=("auto", "unix", "tcp"),
        default="auto",
        help="how the API reaches PostgreSQL: its Unix socket (as a deployment on the database's machine would), TCP, "
        "or auto (default): the socket when the server runs on this machine and has one",
    )
    parser.add_argument("--pg-socket-dir", default=None, help="with unix: the socket's directory (default: the server's unix_socket_directories)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after the rounds, sample the API with py-spy for one more round and print its N busiest functions",
    )
    args = parser.parse_args(argv)
    tool = "wrk" if shutil.which("wrk") else "aiohttp client loop (install wrk for a lighter load generator)"
    with database.temporary(args.admin_url) as url:
        token, workspace_ids = asyncio.run(seed(url, max(1, args.workspaces)))
        hello_port, api_port = free_port(), free_port()
        socket_url = postgres_server.unix_socket_url(url, args.pg_socket_dir) if args.pg_transport != "tcp" else None
        if args.pg_transport == "unix" and socket_url is None:
            raise SystemExit("--pg-transport unix: the server has no Unix socket on this machine (try --pg-socket-dir)")
        api_url_db = socket_url or url
        env = {
            **os.environ,
            "A4C_DATABASE__URL": api_url_db,
            "A4C_HTTP__PORT": str(api_port),
            "A4C_RATE_LIMIT__ENABLED": "false",
            "A4C_LOGGING__LEVEL": "WARNING",
        }
        servers = [
            subprocess.Popen([sys.executable, "-m", "bench.api_read.hello", "--port", str(hello_port), "--loop", args.loop]),
            subprocess.Popen([sys.executable, "-m", "bench.api_read.api_server", "--loop", args.loop], env=env),
        ]
        try:
            auth = {"Authorization": f"Bearer {token}"}
            hello_url = f"http://127.0.0.1:{hello_port}/hello"
            paths = [f"/v1/workspaces/{ws}" for ws in workspace_ids]
            api_url = f"http://127.0.0.1:{api_port}{paths[0]}"
            wait_answering(hello_url, {})
            wait_answering(api_url, auth)
            load(hello_url, {}, 2, args.connections)  # warm-up
            load(api_url, auth, 2, args.connections, None, paths)
            hello_proc, api_proc = psutil.Process(servers[0].pid), psutil.Process(servers[1].pid)
            hello_runs, api_runs = [], []
            for _ in range(args.rounds):
                hello_runs.append(load(hello_url, {}, args.seconds, args.connections, hello_proc))
                api_runs.append(load(api_url, auth, args.seconds, args.connections, api_proc, paths))
            if args.profile:
                profiled = _profile(api_proc.pid, api_url, auth, args.seconds, args.connections, args.profile, paths)
        finally:
            for proc in servers:
                proc.terminate()
            for proc in servers:
                proc.wait(timeout=20)
    hello = max(hello_runs, key=lambda r: r.rps)
    api = max(api_runs, key=lambda r: r.rps)
    ratio = api.rps / hello.rps
    transport = f"its Unix socket ({api_url_db.partition('?')[2]})" if socket_url else f"TCP ({urllib.parse.urlsplit(url).netloc})"
    print(
        f"load generator: {tool}; {args.connections} connections reading {len(workspace_ids)} workspace(s) in turn, {args.rounds} x {args.seconds:.0f} s per server (best round shown); both servers on {args.loop}; API to PostgreSQL over {transport}"
    )
    print(f"{'server':<36} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'of it sys':>10} {'non-2xx':>8}")
    for label, r in (("hello world (bare aiohttp)", hello), ("GET /v1/workspaces/{id}", api)):
        print(f"{label:<36} {r.rps:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.cpu_us:>11.0f} {r.sys_us:>10.0f} {r.errors:>8}")
    print(
        f"throughput ratio api/hello = {ratio:.2f} (target >= {TARGET_RATIO}); server CPU per request ratio hello/api = {hello.cpu_us / api.cpu_us:.2f}"
    )
    cpu_ratio = api.cpu_us / hello.cpu_us if hello.cpu_us else float("inf")
    verdicts = {
        "throughput": ratio >= TARGET_RATIO,
        "p99": api.p99_ms <= TARGET_P99_MS,
        "cpu": cpu_ratio <= TARGET_CPU_RATIO,
    }
    print(
        f"targets: throughput x{ratio:.2f} (>= x{TARGET_RATIO}) {'met' if verdicts['throughput'] else 'MISSED'};"
        f" p99 {api.p99_ms:.1f} ms (<= {TARGET_P99_MS:g}) {'met' if verdicts['p99'] else 'MISSED'};"
        f" CPU per GET x{cpu_ratio:.1f} of hello world's (<= x{TARGET_CPU_RATIO:g}) {'met' if verdicts['cpu'] else 'MISSED'}"
    )
    if args.profile:
        print(f"profile of the API under the same load (py-spy, one {args.seconds:.0f} s round):\n{profiled}")
    print(f"load average during the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(json.dumps({
        "bench": "api_read", "hello_rps": round(hello.rps), "api_rps": round(api.rps), "ratio": round(ratio, 3),
        "api_p99_ms": api.p99_ms, "hello_cpu_us": round(hello.cpu_us), "api_cpu_us": round(api.cpu_us), "hello_sys_us": round(hello.sys_us), "api_sys_us": round(api.sys_us),
        "cpu_ratio": round(cpu_ratio, 2), "workspaces": len(workspace_ids), "loop": args.loop, "pg_transport": "unix" if socket_url else "tcp", "met": verdicts, "loadavg": os.getloadavg()[0],
    }))  # fmt: skip
    return 0 if api.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
