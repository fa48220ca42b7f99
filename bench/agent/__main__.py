"""``python -m bench.agent``: the agent's idle cost, and the time to take and publish an inventory.

Idle: real ``a4c-agent`` processes with production intervals sit idle for
``--seconds`` (default 60) while their CPU time and RSS are sampled; next to
them, in the same run, a bare aiokafka consumer process with the same fetch
settings — the floor any daemon that takes its work from this broker pays.
Two profiles: the default ``commands.fetch_max_wait`` (0.5 s) and the
low-latency one bench/create_direct used on tansu (0.05 s); on a broker that
does not wake long polls early (tansu) the fetch wait traded idle CPU for
latency, on Apache Kafka it only sets how often an idle fetch returns.
The bare consumer's topic is created first with one partition, like a
host's commands topic (the broker does not auto-create topics).
Targets: ≤ 60 MB RSS, ≤ 0.5 % of a core.

Inventory: ``--containers`` (default 500) a4c containers of one host exist;
the agent's reporter lists them and publishes the signed inventory, timed
until Kafka acknowledged it, against Docker's own list call for the same
containers in the same run. Target: < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import statistics
import subprocess
import sys
import textwrap
import time
import typing

import psutil

from agent import context as context_mod
from agent import docker_client, reports, store
from agent import health as health_mod
from agent import identity as identity_mod
from agent import publisher as publisher_mod
from agent import settings as agent_settings
from agent.domain import containers as spec_mod
from bench import machine
from bench.agent import env as env_mod
from shared import kafka, signing
from shared import topics as topics_mod

RSS_TARGET_MB = 60.0
CPU_TARGET_PERCENT = 0.5
INVENTORY_TARGET_S = 1.0

_BARE_CONSUMER = textwrap.dedent(
    """
    import asyncio, sys, aiokafka
    async def main(bootstrap, topic, wait_ms):
        c = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=topic + ".g",
            enable_auto_commit=False, fetch_max_wait_ms=wait_ms, session_timeout_ms=10000, heartbeat_interval_ms=3333)
        await c.start()
        while True:
            await c.getmany(timeout_ms=500)
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def sample(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    start = {name: p.cpu_times() for name, p in procs.items()}
    peak = dict.fromkeys(procs, 0)
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        for name, p in procs.items():
            peak[name] = max(peak[name], p.memory_info().rss)
        time.sleep(1.0)
    wall = time.monotonic() - began
    out = {}
    for name, p in procs.items():
        end = p.cpu_times()
        cpu = (end.user - start[name].user) + (end.system - start[name].system)
        out[name] = {
            "cpu_percent": round(100 * cpu / wall, 3),
            "rss_mb": round(p.memory_info().rss / 1e6, 1),
            "peak_rss_mb": round(peak[name] / 1e6, 1),
        }
    return out


def idle(env: env_mod.BenchEnv, seconds: float) -> dict[str, dict[str, float]]:
    profiles = {"default": 0.5, "low-latency": 0.05}
    pids: dict[str, int] = {}
    bare: list[subprocess.Popen] = []
    kafka_settings = agent_settings.Settings.model_validate({"kafka": {"bootstrap_servers": [env.bootstrap], "topic_prefix": env.prefix}}).kafka
    asyncio.run(kafka.ensure_topics(kafka_settings, [f"{env.prefix}.bare-{name}" for name in profiles], partitions=1))
    for name, wait in profiles.items():
        agent = env.agent(f"idle-{name}", env_mod.merged(env_mod.PRODUCTION_INTERVALS, {"commands": {"fetch_max_wait": wait}}))
        assert agent.process is not None
        pids[f"agent ({name})"] = agent.process.pid
        topic = f"{env.prefix}.bare-{name}"
        proc = subprocess.Popen([sys.executable, "-c", _BARE_CONSUMER, env.bootstrap, topic, str(int(wait * 1000))])
        env.run.track(f"bare consumer {name}", proc)
        bare.append(proc)
        pids[f"bare consumer ({name})"] = proc.pid
    try:
        time.sleep(10)  # past startup: joins, first reports
        return sample(pids, seconds)
    finally:
        for proc in bare:
            proc.terminate()
            proc.wait(timeout=10)


async def inventory(env: env_mod.BenchEnv, count: int, rounds: int) -> dict[str, float]:
    assert env.client is not None
    host_id = f"inv-{env.run.id}"
    labels = {"a4c.managed": "true", "a4c.host": host_id, "a4c.test-run": env.run.id}
    api = env.client.api

    def make(i: int) -> None:
        api.create_container(env.image, ["sleep", "1"], name=f"a4c-bench-inv-{env.run.id}-{i}", labels={**labels, "a4c.workspace": f"w{i}"})

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(count)))
    print(f"  created {count} containers in {time.monotonic() - began:.1f} s", file=sys.stderr)

    settings = agent_settings.Settings.model_validate(
        {"kafka": {"bootstrap_servers": [env.bootstrap], "topic_prefix": env.prefix}, "docker": {"base_url": env.docker_host}}
    )
    ident = identity_mod.Identity(host_id=host_id, key=signing.new_key())
    health = health_mod.Health()
    publisher = publisher_mod.Publisher(settings.kafka, topics_mod.Topics(env.prefix).events, ident, health)
    docker = docker_client.Docker(env.docker_host, timeout=60)
    ctx = context_mod.Context(settings, ident, docker, publisher, health, store.WorkspaceMarks(str(env.tmp)))
    reporter = reports.Reporter(ctx)
    stopping = asyncio.Event()
    runner = asyncio.create_task(publisher.run(stopping))
    filters = spec_mod.owned_filters(host_id)
    try:
        await reporter.send_inventory()
        assert await publisher.flush(30), "the broker did not take the warm-up inventory"
        agent_times, list_times = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            report = await reporter.send_inventory()
            assert await publisher.flush(30)
            agent_times.append(time.perf_counter() - t0)
            assert len(report.containers) == count
            t0 = time.perf_counter()
            rows = await asyncio.to_thread(api.containers, all=True, filters={"label": filters})
            list_times.append(time.perf_counter() - t0)
            assert len(rows) == count
    finally:
        stopping.set()
        await asyncio.wait_for(runner, 10)
        docker.close()
    return {
        "containers": count,
        "agent_median_s": round(statistics.median(agent_times), 4),
        "agent_max_s": round(max(agent_times), 4),
        "docker_list_median_s": round(statistics.median(list_times), 4),
        "ratio": round(statistics.median(agent_times) / statistics.median(list_times), 2),
    }


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle sampling window")
    parser.add_argument("--containers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    start_load = machine.load("start")
    with env_mod.BenchEnv() as env:
        print(f"idle: sampling for {args.seconds:.0f} s …", file=sys.stderr)
        idle_results = idle(env, args.seconds)
        print(f"inventory: {args.containers} containers …", file=sys.stderr)
        inv = asyncio.run(inventory(env, args.containers, args.rounds))
    print(f"\nidle over {args.seconds:.0f} s (targets: RSS ≤ {RSS_TARGET_MB:.0f} MB, CPU ≤ {CPU_TARGET_PERCENT} % of a core)")
    print(f"  {'process':28} {'CPU %':>8} {'RSS MB':>8} {'peak MB':>8}")
    for name, r in idle_results.items():
        print(f"  {name:28} {r['cpu_percent']:8.3f} {r['rss_mb']:8.1f} {r['peak_rss_mb']:8.1f}")
    for profile in ("default", "low-latency"):
        a, b = idle_results[f"agent ({profile})"], idle_results[f"bare consumer ({profile})"]
        print(f"  agent/bare consumer ({profile}): CPU ×{a['cpu_percent'] / max(b['cpu_percent'], 1e-6):.2f}, RSS ×{a['rss_mb'] / b['rss_mb']:.2f}")
    print(f"\ninventory of {inv['containers']} a4c containers, list + sign + publish until acknowledged (target < {INVENTORY_TARGET_S} s)")
    print(
        f"  agent median {inv['agent_median_s'] * 1000:.0f} ms (max {inv['agent_max_s'] * 1000:.0f} ms);"
        f" docker list alone {inv['docker_list_median_s'] * 1000:.0f} ms; ratio ×{inv['ratio']}"
    )
    end_load = machine.load("end")
    print(f"load average (1 min) at the start {start_load[0]:.2f}, at the end {end_load[0]:.2f}")
    print(json.dumps({"idle": idle_results, "inventory": inv, "load_average_start_end": [round(start_load[0], 2), round(end_load[0], 2)]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
