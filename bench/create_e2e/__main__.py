"""``python -m bench.create_e2e``: API ``POST /v1/workspaces`` → the API reports ``running``, vs a raw docker SDK ``containers.run``.

One control plane (``a4c-controlplane run``) and one agent (``a4c-agent run``)
as real processes on the test harness's components (Apache Kafka 4.1, a
fresh database on the machine's PostgreSQL or the harness's embedded one, a
private dockerd): the whole path under test is
API → outbox → relay (woken by NOTIFY) → Kafka → agent → Docker → event →
consumer → PostgreSQL → API. The baseline is the docker SDK starting the same
image with the same limits, capabilities, restart policy and published port
on the same daemon, the way the agent does (agent/domain/containers.py).

Each round runs both, alternating which goes first, then deletes the
workspace through the API (waiting for its job) and removes the direct
container, so every round starts from the same state:

* API path: from just before the POST until a GET of the workspace answers
  ``observed_state: running`` (polled every ``--poll`` s, default 5 ms, on one
  keep-alive connection);
* direct: from just before ``client.containers.run(...)`` until it returns
  (created and started).

A standing workspace runs throughout; while the direct path runs, the same
GET poll reads it, so the observer's own load (each GET costs the control
plane and PostgreSQL CPU that Docker then lacks) weighs on both paths alike.

Overhead per round = API − direct (the two ran seconds apart on the same
daemon, so the paired difference cancels most of Docker's own ±100 ms
jitter). Targets: median overhead ≤ 50 ms, p99 ≤ 150 ms (with 20 rounds, the
p99 is the worst round).

Where the time goes (all on this machine's one clock, ms after the POST):
``accepted`` (POST answered), ``relay`` (the outbox row claimed: the relay
transaction's ``now()``), ``created`` / ``started`` (Docker's ``Created`` and
``State.StartedAt``), ``event`` (the agent's ``workspace.state running``
event: its envelope's ``issued_at``, read from the events topic), ``applied``
(a benchmark-only trigger on ``workspaces`` stamps ``clock_timestamp()`` when
the consumer's UPDATE sets ``running``), ``seen`` (the poll).

The accept step (POST → 202: validate, place, insert workspace, job and
command, commit, answer) has its own target, median ≤ 5 ms. Each POST waits
until the stack's own processes (control plane, agent, Kafka, dockerd) have
been quiet for 20 ms (under 5 % of a core, :func:`bench.machine.quiet`), so
the step is not timed against what the round before set off: the agent
finishing the last delete, Docker removing or starting a container, the
consumer catching up. Its same-run baselines, each taken right after that
wait and right before the round's POST on the same connections:
``GET /v1/me`` (the API's cheapest authenticated answer: token from the cache,
no database) and a bare one-row ``INSERT`` + ``COMMIT`` on PostgreSQL (what any
write transaction pays at least).

Both consumers on the path run with the product's defaults (the agent's
``commands.fetch_max_wait`` and the control plane's ``events.fetch_max_wait``,
0.5 s each): Apache Kafka answers a waiting fetch as soon as a record
arrives, so the wait bounds nothing here. (On tansu, the stand-in this
bench ran on until 2026-12, it did: the run then used 0.05 s for both.)
``--fetch-max-wait`` sets both, to compare.

The agent reports ``running`` only once the container has stayed up for
``docker.settle_period`` (default 2 s, agent/crashes.py): a deliberate wait,
not overhead of the path. The benchmark measures the path, so its agent runs
with ``--settle-period`` (default 0.001 s, the smallest the setting takes);
``--settle-period 2`` shows the product's default, which adds those 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
import typing
import uuid

import aiohttp
import aiokafka
import asyncpg

from agent.domain import inventory as inv
from bench import machine
from bench.create_e2e import stack as stack_mod
from shared import eventloop, signing, topics

TARGET_MEDIAN_MS = 50.0
TARGET_P99_MS = 150.0
TARGET_ACCEPT_MS = 5.0
CPUS, MEMORY_MB, PIDS = 0.5, 64, 1024  # PIDS: the spec's default, which the control plane sends
CAP_ADD = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"]

# Benchmark-only: when did the consumer's UPDATE make the workspace running?
# (observed_at is overwritten by the job result a moment later.)
_AUDIT = [
    "CREATE TABLE bench_observed (workspace_id uuid, state text, at timestamptz)",
    "CREATE TABLE bench_commit (at timestamptz)",  # the accept step's baseline write
    """
    CREATE FUNCTION bench_observed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO bench_observed VALUES (NEW.id, NEW.observed_state::text, clock_timestamp());
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER bench_observed AFTER UPDATE OF observed_state ON workspaces
    FOR EACH ROW WHEN (OLD.observed_state IS DISTINCT FROM NEW.observed_state) EXECUTE FUNCTION bench_observed()
    """,
]
_BREAKDOWN = """
SELECT extract(epoch FROM j.created_at) AS job_created,
       (SELECT extract(epoch FROM min(o.published_at)) FROM outbox o
         WHERE o.topic LIKE 'commands.%' AND o.payload -> 'payload' ->> 'job_id' = j.id::text) AS relay,
       (SELECT extract(epoch FROM min(b.at)) FROM bench_observed b
         WHERE b.workspace_id = j.workspace_id AND b.state = 'running') AS applied
FROM jobs j WHERE j.id = $1
"""

STAGES = ("accepted", "relay", "created", "started", "event", "applied", "seen")


def workspace_image(client: typing.Any, base: str, tag: str) -> str:
    """What a workspace runs: busybox httpd on 8080 (the e2e tests' image), so a port is published."""
    dockerfile = f'FROM {base}\nRUN mkdir -p /www && echo a4c-bench > /www/index.html\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


class RunningEvents:
    """The agent's ``workspace.state running`` events, read from the events topic: workspace id → issued_at."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self._consumer = aiokafka.AIOKafkaConsumer(
            topics.Topics(prefix).events,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        self.issued: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for record in self._consumer:
            body = signing.peek(record.value)
            payload = body.get("payload") or {}
            if body.get("kind") == "workspace.state" and payload.get("state") == "running":
                self.issued.setdefault(str(payload.get("workspace_id")), float(body.get("issued_at") or 0))

    async def wait(self, workspace_id: str, timeout: float = 5.0) -> float | None:
        deadline = time.monotonic() + timeout
        while workspace_id not in self.issued and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.issued.get(workspace_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()


async def _poll_until(
    session: aiohttp.ClientSession, url: str, done: typing.Callable[[dict], bool], interval: float, timeout: float
) -> tuple[dict, float, int]:
    """GET ``url`` until ``done(body)``; returns the body, the time it answered, and how many GETs it took."""
    deadline = time.monotonic() + timeout
    gets = 0
    while True:
        async with session.get(url) as resp:
            body = await resp.json()
            seen = time.time()
        gets += 1
        if resp.status != 200:
            raise SystemExit(f"GET {url} -> {resp.status}: {body}")
        if done(body):
            return body, seen, gets
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out polling {url}: {json.dumps(body)[:500]}")
        await asyncio.sleep(interval)


async def measure(s: stack_mod.Stack, host_id: str, image: str, rounds: int, warmup: int, poll: float) -> dict[str, typing.Any]:
    assert s.plane is not None and s.client is not None and s.broker is not None
    client = s.client
    db = await asyncpg.connect(s.database_url)
    for statement in _AUDIT:
        await db.execute(statement)
    events = RunningEvents(s.broker.bootstrap, s.prefix)
    await events.start()
    base = s.plane.url
    api_ms: list[float] = []
    direct_ms: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    gets_per_round: list[int] = []
    direct_marks: list[dict[str, float]] = []
    cycle_ms: list[float] = []  # one GET plus the pause: the poll's resolution
    baseline_ms: dict[str, list[float]] = {"me": [], "commit": []}  # the accept step's same-run baselines
    quiet_ms: list[float] = []  # how long each POST waited for the stack to go quiet
    noisy = 0  # POSTs whose wait ran out (timed anyway)
    roots = s.pids()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {s.token}"}) as session:

            async def via_api(name: str) -> tuple[float, dict[str, float], str]:
                nonlocal noisy
                body = {"name": name, "image_ref": image, "cpus": CPUS, "memory_mb": MEMORY_MB, "disk_gb": 1, "ports": [{"container_port": 8080}]}
                waited, settled = await machine.quiet(roots)
                quiet_ms.append(waited * 1000)
                noisy += not settled
                await accept_baselines()
                t0 = time.time()
                async with session.post(f"{base}/v1/workspaces", json=body) as resp:
                    accepted = await resp.json()
                    t_accepted = time.time()
                if resp.status != 202:
                    raise SystemExit(f"POST /v1/workspaces -> {resp.status}: {accepted}")
                ws_id, job_id = accepted["workspace"]["id"], accepted["job"]["id"]
                ws, seen, gets = await _poll_until(
                    session, f"{base}/v1/workspaces/{ws_id}", lambda w: w["observed_state"] in ("running", "failed"), poll, 30
                )
                if ws["observed_state"] != "running":
                    raise SystemExit(f"workspace {name} failed: {ws['state_reason']}")
                gets_per_round.append(gets)
                cycle_ms.append((seen - t_accepted) * 1000 / gets)
                inspect = client.api.inspect_container(ws["container_id"])
                row = await db.fetchrow(_BREAKDOWN, uuid.UUID(job_id))
                marks = {
                    "accepted": t_accepted,
                    "relay": row["relay"],
                    "created": inv.parse_time(inspect["Created"]),
                    "started": inv.parse_time(inspect["State"]["StartedAt"]),
                    "event": await events.wait(ws_id),
                    "applied": row["applied"],
                    "seen": seen,
                }
                return seen - t0, {k: (float(v) - t0) * 1000 if v is not None else float("nan") for k, v in marks.items()}, ws_id

            async def accept_baselines() -> None:
                t0 = time.perf_counter()
                async with session.get(f"{base}/v1/me") as resp:
                    await resp.read()
                t1 = time.perf_counter()
                async with db.transaction():
                    await db.execute("INSERT INTO bench_commit VALUES (now())")
                t2 = time.perf_counter()
                if resp.status != 200:
                    raise SystemExit(f"GET /v1/me -> {resp.status}")
                baseline_ms["me"].append((t1 - t0) * 1000)
                baseline_ms["commit"].append((t2 - t1) * 1000)

            def direct(name: str) -> tuple[float, str]:
                t0 = time.time()
                # types-docker's stubs lack unless-stopped and a port bound to a host IP alone.
                container = client.containers.run(  # type: ignore[call-overload]
                    image,
                    name=f"bench-direct-{name}",
                    hostname=name,
                    detach=True,
                    labels={"a4c.test-run": s.run.id},
                    nano_cpus=int(CPUS * 1e9),
                    mem_limit=MEMORY_MB * 1024 * 1024,
                    memswap_limit=MEMORY_MB * 1024 * 1024,
                    pids_limit=PIDS,
                    privileged=False,
                    security_opt=["no-new-privileges:true"],
                    cap_drop=["ALL"],
                    cap_add=CAP_ADD,
                    restart_policy={"Name": "unless-stopped"},
                    ports={"8080/tcp": ("127.0.0.1",)},
                )
                returned = time.time()
                inspect = client.api.inspect_container(container.id)
                direct_marks.append(
                    {
                        "created": (inv.parse_time(inspect["Created"]) - t0) * 1000,  # type: ignore[operator]
                        "started": (inv.parse_time(inspect["State"]["StartedAt"]) - t0) * 1000,  # type: ignore[operator]
                    }
                )
                return returned - t0, container.id

            async def direct_polled(name: str) -> tuple[float, str]:
                """The direct run, while the same GET poll the API path uses hits a standing workspace.

                Each GET costs the control plane and PostgreSQL CPU that Docker then
                lacks (5 ms polling slowed Docker's own create→start by ~70 ms here):
                both paths bear it, so it is not counted as the API path's overhead.
                """
                done = asyncio.Event()

                async def poll_load() -> None:
                    while not done.is_set():
                        async with session.get(f"{base}/v1/workspaces/{standing}") as resp:
                            await resp.read()
                        await asyncio.sleep(poll)

                load = asyncio.create_task(poll_load())
                try:
                    return await asyncio.to_thread(direct, name)
                finally:
                    done.set()
                    await load

            async def delete(ws_id: str) -> None:
                async with session.delete(f"{base}/v1/workspaces/{ws_id}") as resp:
                    answer = await resp.json()
                if resp.status != 202:
                    raise SystemExit(f"DELETE workspace -> {resp.status}: {answer}")
                await _poll_until(session, f"{base}/v1/jobs/{answer['job']['id']}", lambda j: j["status"] in ("succeeded", "failed"), 0.02, 30)

            # A workspace that stays up the whole run: what the direct path's poll load reads.
            standing = (await via_api("bench-standing"))[2]
            gets_per_round.clear()
            cycle_ms.clear()
            for i in range(-warmup, rounds):
                name = f"bench-{i + warmup}"
                if i % 2:
                    (api_s, marks, ws_id), (direct_s, direct_id) = await via_api(name), await direct_polled(name)
                else:
                    (direct_s, direct_id), (api_s, marks, ws_id) = await direct_polled(name), await via_api(name)
                await delete(ws_id)
                client.api.remove_container(direct_id, force=True)
                if i < 0:
                    quiet_ms.clear()
                    noisy = 0
                    baseline_ms["me"].clear()
                    baseline_ms["commit"].clear()
                    direct_marks.clear()
                    gets_per_round.clear()
                    cycle_ms.clear()
                    continue
                api_ms.append(api_s * 1000)
                direct_ms.append(direct_s * 1000)
                for k, v in marks.items():
                    stages[k].append(v)
                print(
                    f"  round {i + 1:2d}: api {api_s * 1000:7.1f} ms  direct {direct_s * 1000:6.1f} ms  "
                    + "  ".join(f"{k} {v:6.1f}" for k, v in marks.items()),
                    flush=True,
                )
    finally:
        await events.close()
        await db.close()
    result = summarise(api_ms, direct_ms, stages, gets_per_round, poll)
    result["poll_cycle_median_ms"] = round(statistics.median(cycle_ms), 1)
    accepted = stages["accepted"]
    result["accept"] = {
        "median_ms": round(statistics.median(accepted), 2),
        "p99_ms": round(pct(accepted, 99), 2),
        "me_median_ms": round(statistics.median(baseline_ms["me"]), 2),
        "commit_median_ms": round(statistics.median(baseline_ms["commit"]), 2),
        "quiet_wait_median_ms": round(statistics.median(quiet_ms), 1),
        "quiet_wait_max_ms": round(max(quiet_ms), 1),
        "not_quiet": noisy,
    }
    result["direct_stage_median_ms"] = {k: round(statistics.median(m[k] for m in direct_marks), 1) for k in ("created", "started")}
    return result


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarise(api_ms: list[float], direct_ms: list[float], stages: dict[str, list[float]], gets: list[int], poll: float) -> dict[str, typing.Any]:
    overhead = [a - d for a, d in zip(api_ms, direct_ms, strict=True)]
    # Each stage's own duration: from the previous mark to this one, per round, then the median.
    steps: dict[str, float] = {}
    previous = [0.0] * len(api_ms)
    for name in STAGES:
        now = stages[name]
        steps[name] = round(statistics.median(b - a for a, b in zip(previous, now, strict=True)), 1)
        previous = now
    return {
        "rounds": len(api_ms),
        "poll_s": poll,
        "api_median_ms": round(statistics.median(api_ms), 1),
        "api_p99_ms": round(pct(api_ms, 99), 1),
        "direct_median_ms": round(statistics.median(direct_ms), 1),
        "direct_p99_ms": round(pct(direct_ms, 99), 1),
        "overhead_median_ms": round(statistics.median(overhead), 1),
        "overhead_p99_ms": round(pct(overhead, 99), 1),
        "overhead_of_medians_ms": round(statistics.median(api_ms) - statistics.median(direct_ms), 1),
        "ratio": round(statistics.median(api_ms) / statistics.median(direct_ms), 2),
        "stage_median_ms": {k: round(statistics.median(v), 1) for k, v in stages.items()},
        "step_median_ms": steps,
        "gets_per_round_median": statistics.median(gets),
    }


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.create_e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.005, help="seconds between GETs of the workspace")
    parser.add_argument(
        "--fetch-max-wait",
        type=float,
        default=None,
        help="the agent's commands.fetch_max_wait and the control plane's events.fetch_max_wait (default: the product's, 0.5 s)",
    )
    parser.add_argument(
        "--loop", choices=eventloop.CHOICES, default="uvloop", help="the control plane's runtime.event_loop (default: the product's, uvloop)"
    )
    parser.add_argument(
        "--settle-period",
        type=float,
        default=0.001,
        help="the agent's docker.settle_period (default 0.001 s: the path without the product's deliberate 2 s wait)",
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    start_load = machine.load("start")
    waits = {"fetch_max_wait": args.fetch_max_wait} if args.fetch_max_wait is not None else {}
    with stack_mod.Stack(docker=True, plane={"events": waits, "runtime": {"event_loop": args.loop}}) as s:
        assert s.client is not None
        image = workspace_image(s.client, s.image, f"a4c-test/bench-ws:{s.run.id}")
        try:
            _, host_id = s.add_agent("agent", {"commands": waits, "docker": {"settle_period": args.settle_period}})
            result = asyncio.run(measure(s, host_id, image, args.rounds, args.warmup, args.poll))
        finally:
            s.client.images.remove(image, force=True)
    result["fetch_max_wait_s"] = args.fetch_max_wait if args.fetch_max_wait is not None else "product default"
    result["settle_period_s"] = args.settle_period
    result["event_loop"] = args.loop
    result["wall_s"] = round(time.monotonic() - began, 1)
    result["load_average_start_end"] = [round(start_load[0], 2), round(machine.load("end")[0], 2)]
    report(result)
    return 0


def report(r: dict[str, typing.Any]) -> None:
    print(
        f"\nPOST /v1/workspaces → API reports running, {r['rounds']} rounds, poll {r['poll_s'] * 1000:.0f} ms, fetch_max_wait {r['fetch_max_wait_s']}{' s' if isinstance(r['fetch_max_wait_s'], float) else ''} (agent commands, control-plane events), agent docker.settle_period {r['settle_period_s']} s, control plane on {r['event_loop']}"
    )
    print(f"  API path:                 median {r['api_median_ms']:7.1f} ms   p99 {r['api_p99_ms']:7.1f} ms")
    print(f"  direct containers.run:    median {r['direct_median_ms']:7.1f} ms   p99 {r['direct_p99_ms']:7.1f} ms   (ratio ×{r['ratio']})")
    print("  where the time goes (median ms spent in each step, ending at):")
    print("    " + "  ".join(f"{k} {v:.1f}" for k, v in r["step_median_ms"].items()))
    print(f"  the poll: a GET every {r['poll_cycle_median_ms']:.1f} ms (median), {r['gets_per_round_median']} GETs per create")
    d, a = r["direct_stage_median_ms"], r["stage_median_ms"]
    print(
        f"  Docker itself (median ms after the call): direct created {d['created']:.1f} started {d['started']:.1f}; "
        f"API path created {a['created']:.1f} started {a['started']:.1f} → created−started {a['started'] - a['created']:.1f} vs {d['started'] - d['created']:.1f}"
    )
    acc = r["accept"]
    print(
        f"  accept step (POST → 202): median {acc['median_ms']:.2f} ms, p99 {acc['p99_ms']:.2f} ms; same-run baselines: GET /v1/me "
        f"{acc['me_median_ms']:.2f} ms (×{acc['median_ms'] / acc['me_median_ms']:.1f}), bare INSERT+COMMIT {acc['commit_median_ms']:.2f} ms"
    )
    print(
        f"  each POST waited for the stack to go quiet: median {acc['quiet_wait_median_ms']:.1f} ms, max {acc['quiet_wait_max_ms']:.1f} ms; "
        f"{acc['not_quiet']} of {r['rounds']} timed without it (still busy after 3 s)"
    )
    verdict = "MEETS" if acc["median_ms"] <= TARGET_ACCEPT_MS else "MISSES"
    print(f"  VERDICT accept median: {acc['median_ms']:.2f} ms — {verdict} the ≤ {TARGET_ACCEPT_MS:.0f} ms target")
    for label, value, target in (("median", r["overhead_median_ms"], TARGET_MEDIAN_MS), ("p99", r["overhead_p99_ms"], TARGET_P99_MS)):
        verdict = "MEETS" if value <= target else "MISSES"
        print(f"  VERDICT overhead {label}: {value:.1f} ms — {verdict} the ≤ {target:.0f} ms target")
    print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
