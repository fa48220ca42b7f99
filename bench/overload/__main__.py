"""``python -m bench.overload``: wrk far past capacity; only 2xx/401/429/503 (Retry-After on every 429/503), bounded RSS, quick recovery.

With no load shedding, searches ran at p99 6.2 s, creates
at p99 6.6 s, and abandoned requests still completed. Now per-address
lookup limits, per-token buckets and per-route-class concurrency caps answer
429/503 with ``Retry-After`` instead. This runs, against one API process
served as ``a4c-controlplane run`` serves it, with default settings, on
127.0.0.1 only:

1. baseline: a probe user's ``GET /v1/me`` latency, sequential, idle server;
2. ``wrk`` for ``--seconds`` (at most 30) with ``--connections``, a mix of
   searches, workspace creates and ``/v1/me`` from ``--users`` users, plus
   made-up tokens (expected: 401, then 429 once the address's lookup budget
   is spent); a Lua script counts statuses and 429/503 answers without
   ``Retry-After``; RSS sampled throughout;
3. recovery: the probe's ``/v1/me`` at 20/s after wrk stops, until five
   in a row are within twice the baseline p50 (or under its p99).

Verdict: no 5xx other than 503, Retry-After on every 429/503, peak RSS under
``--rss-limit`` MB, recovery within 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing
import urllib.request

import psutil

from bench.api_read import __main__ as api_read
from bench.search import servers
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.services import users

MAX_SECONDS = 30
PROBE_PAUSE = 0.05
RECOVERY_TARGET_S = 5.0
HERE = pathlib.Path(__file__).parent


async def seed(url: str, count: int) -> list[str]:
    """``count`` users with a token each, plus the probe's (the last)."""
    settings = cp_settings.load(environ={}, **{"database.url": url})
    engine = db_engine.create(settings.database)
    tokens = []
    try:
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            for i in range(count + 1):
                user = await users.create_user(session, f"load{i}")
                tokens.append((await users.issue_token(session, user.id)).token)
        return tokens
    finally:
        await engine.dispose()


def probe(url: str, token: str) -> float:
    """Seconds for one ``GET /v1/me`` on a fresh connection (what a user arriving now sees); inf unless it answers 200.

    Probes are paced at 20/s (PROBE_PAUSE), well under the token's rate limit.
    """
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=30) as resp:
            resp.read()
            took = time.perf_counter() - started if resp.status == 200 else float("inf")
    except OSError:  # urllib.error.HTTPError included: a 429/503 is not an answer yet
        took = float("inf")
    time.sleep(PROBE_PAUSE)
    return took


def sample_rss(process: psutil.Process, stop: threading.Event, samples: list[float]) -> None:
    while not stop.is_set():
        samples.append(process.memory_info().rss / 1e6)
        stop.wait(0.25)


def _find(pattern: str, text: str) -> re.Match[str]:
    found = re.search(pattern, text, re.M)
    if found is None:
        raise SystemExit(f"wrk's report has no line matching {pattern!r}:\n{text}")
    return found


def run_wrk(base: str, tokens: list[str], seconds: int, connections: int) -> dict[str, typing.Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("tokens = {" + ",".join(f'"{t}"' for t in tokens) + "}\n")
        script.write((HERE / "mix.lua").read_text())
    try:
        argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", script.name, base]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(script.name)
    statuses = {int(code): int(n) for code, n in re.findall(r"^a4c-status (\d+) (\d+)$", out, re.M)}
    missing = sum(int(n) for n in re.findall(r"^a4c-missing-retry-after (\d+)$", out, re.M))
    errors = dict(
        zip(("connect", "read", "write", "timeout"), map(int, _find(r"^a4c-socket-errors (\d+) (\d+) (\d+) (\d+)$", out).groups()), strict=True)
    )
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"statuses": statuses, "missing_retry_after": missing, "socket_errors": errors, "rps": rps}


def shed_counts(metrics: str) -> dict[str, int]:
    """Who refused what, from the API's own counters."""
    found = {f"503 {cls}": int(float(n)) for cls, n in re.findall(r'^a4c_http_shed_total\{route_class="(\w+)"\} (\S+)$', metrics, re.M)}
    for name, label in (
        ("a4c_auth_lookups_refused_total", "429 before a token lookup"),
        ("a4c_http_connections_refused_total", "connections refused"),
    ):
        total = sum(float(n) for n in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", metrics, re.M))
        found[label] = int(total)
    return found


def recover(url: str, token: str, fast: float) -> float:
    """Seconds after wrk stopped until five probes in a row take at most ``fast``."""
    started = first = time.monotonic()
    streak = 0
    while streak < 5:
        streak = streak + 1 if probe(url, token) <= fast else 0
        if streak == 1:
            first = time.monotonic()
        if time.monotonic() - started > 120:
            return float("inf")
    return first - started


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url",
        default=servers.ADMIN_URL,
        help="PostgreSQL URL allowed to CREATE DATABASE (default: 127.0.0.1:5432 if it answers, else an embedded server started here)",
    )
    parser.add_argument("--seconds", type=int, default=20, help=f"length of the wrk run (at most {MAX_SECONDS})")
    parser.add_argument("--connections", type=int, default=200, help="wrk connections (the per-address cap is http.max_connections_per_address)")
    parser.add_argument("--users", type=int, default=50, help="users (tokens) the load comes from")
    parser.add_argument("--rss-limit", type=float, default=400.0, help="peak API RSS (MB) that counts as bounded")
    args = parser.parse_args(argv)
    seconds = min(args.seconds, MAX_SECONDS)
    with servers.database(args.admin_url) as url:
        tokens = asyncio.run(seed(url, args.users))
        probe_token, tokens = tokens[-1], tokens[:-1]
        port = api_read.free_port()
        env = {**os.environ, "A4C_DATABASE__URL": url, "A4C_HTTP__HOST": "127.0.0.1", "A4C_HTTP__PORT": str(port), "A4C_LOGGING__LEVEL": "ERROR"}
        server = subprocess.Popen([sys.executable, "-m", "bench.api_read.api_server"], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            me = f"{base}/v1/me"
            api_read.wait_answering(me, {"Authorization": f"Bearer {probe_token}"})
            process = psutil.Process(server.pid)
            for _ in range(20):
                probe(me, probe_token)  # warm up
            baseline = sorted(probe(me, probe_token) for _ in range(100))
            p50, p99 = statistics.median(baseline), baseline[int(len(baseline) * 0.99) - 1]
            rss_before = process.memory_info().rss / 1e6
            samples: list[float] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(process, stop, samples), daemon=True)
            sampler.start()
            result = run_wrk(base, tokens, seconds, args.connections)
            recovery = recover(me, probe_token, max(2 * p50, p99))
            stop.set()
            sampler.join()
            rss_after = process.memory_info().rss / 1e6
            with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
                shed = shed_counts(resp.read().decode())
            if server.poll() is not None:
                raise SystemExit(f"the API exited during the run (code {server.returncode})")
        finally:
            server.terminate()
            server.wait(timeout=20)
    statuses = result["statuses"]
    total = sum(statuses.values())
    bad = {code: n for code, n in statuses.items() if code >= 500 and code != 503}
    peak = max(samples, default=rss_after)
    print(f"wrk: {seconds} s, {args.connections} connections, {args.users} users + made-up tokens; {total:,} answers ({result['rps']:,.0f}/s)")
    print("status counts: " + ", ".join(f"{code}: {n:,}" for code, n in sorted(statuses.items())))
    print(f"socket errors (wrk): {result['socket_errors']}")
    print("refused, by the API's counters: " + ", ".join(f"{k}: {v:,}" for k, v in shed.items()))
    print(f"429/503 without Retry-After: {result['missing_retry_after']}")
    print(f"/v1/me baseline: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"API RSS: {rss_before:.1f} MB before, peak {peak:.1f} MB during, {rss_after:.1f} MB after (limit {args.rss_limit:.0f} MB)")
    print(f"recovered (5 probes in a row <= {max(2 * p50, p99) * 1000:.1f} ms) {recovery:.2f} s after wrk stopped (target {RECOVERY_TARGET_S:.0f} s)")
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    verdict = not bad and result["missing_retry_after"] == 0 and peak <= args.rss_limit and recovery <= RECOVERY_TARGET_S
    print("verdict: " + ("met" if verdict else "MISSED") + (f" (5xx: {bad})" if bad else ""))
    print(
        json.dumps(
            {
                "bench": "overload",
                "seconds": seconds,
                "connections": args.connections,
                "statuses": statuses,
                "rps": result["rps"],
                "socket_errors": result["socket_errors"],
                "refused": shed,
                "missing_retry_after": result["missing_retry_after"],
                "me_p50_ms": round(p50 * 1000, 2),
                "me_p99_ms": round(p99 * 1000, 2),
                "rss_mb": {"before": round(rss_before, 1), "peak": round(peak, 1), "after": round(rss_after, 1)},
                "recovery_s": round(recovery, 2),
                "verdict": "met" if verdict else "missed",
            }
        )
    )
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
