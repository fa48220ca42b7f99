"""``python -m bench.create_direct``: signed create command → container running, vs a raw docker SDK ``containers.run``.

Both paths start the same image with the same command and limits on the same
daemon, alternating, in the same run. "Running" is the container's own
``State.StartedAt`` as recorded by the daemon, so neither path's observer
adds to its time:

* agent: from just before the command is published to Kafka;
* direct: from just before ``client.containers.run(...)`` is called.

The median overhead (agent − direct) targets < 30 ms. The agent runs with
the product's ``commands.fetch_max_wait`` (0.5 s) unless ``--fetch-max-wait``
says otherwise: Apache Kafka answers a waiting fetch as soon as a record
arrives. (tansu, the stand-in this bench ran on until 2026-12, did not, so
the old runs used 0.05 s.) Also reported: until the agent's ``workspace.state`` running event
reached a consumer (the control plane's view).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import typing

from agent.domain import containers as containers_mod
from agent.domain import inventory as inv
from bench.agent import env as env_mod
from shared import messages
from tests.agent import driver

TARGET_OVERHEAD_MS = 30.0


async def measure(env: env_mod.BenchEnv, rounds: int, fetch_max_wait: float) -> dict[str, typing.Any]:
    assert env.client is not None
    client = env.client
    agent = env.agent("create", {"commands": {"fetch_max_wait": fetch_max_wait}, "docker": {"stop_timeout": 1}})
    host_id, key = agent.host_id, agent.key
    commands = driver.Commands(env.bootstrap, env.prefix)
    events = driver.Events(env.bootstrap, env.prefix, keys={host_id: key})
    await commands.start()
    await events.start()
    labels = {"a4c.test-run": env.run.id}
    spec: dict[str, typing.Any] = {"image": env.image, "cpus": 0.5, "memory_mb": 64, "pids_limit": 256, "command": ["sleep", "3600"]}
    agent_ms, direct_ms, event_ms = [], [], []
    try:
        # Warm-up: the group join, first fetch, image layers in the page cache.
        for i in range(-2, rounds):
            ws = f"bench-{env.run.id}-{i + 2}"
            command = messages.WorkspaceCommand(job_id=f"job-{ws}", spec=messages.WorkspaceSpec(workspace_id=ws, name=ws, owner="bench", **spec))

            async def via_agent() -> tuple[float, float]:
                raw = commands.envelope(messages.CommandKind.WORKSPACE_CREATE, command, host_id=host_id, key=key)
                t0 = await commands.send_raw(host_id, raw)  # the time right before the publish
                running = await events.wait_for("workspace.state", workspace_id=ws, state="running", timeout=30)
                started = inv.parse_time(client.api.inspect_container(containers_mod.container_name(ws, host_id))["State"]["StartedAt"])
                return started - t0, running.received_at - t0  # type: ignore[operator]

            def direct_run() -> tuple[float, str]:
                t0 = time.time()
                # types-docker's stubs lack the unless-stopped restart policy.
                container = client.containers.run(  # type: ignore[call-overload]
                    env.image,
                    spec["command"],
                    detach=True,
                    labels=labels,
                    nano_cpus=int(spec["cpus"] * 1e9),
                    mem_limit=spec["memory_mb"] * 1024 * 1024,
                    memswap_limit=spec["memory_mb"] * 1024 * 1024,
                    pids_limit=spec["pids_limit"],
                    security_opt=["no-new-privileges:true"],
                    cap_drop=["ALL"],
                    restart_policy={"Name": "unless-stopped"},
                )
                started = inv.parse_time(client.api.inspect_container(container.id)["State"]["StartedAt"])
                return started - t0, container.id  # type: ignore[operator]

            # Alternate which goes first, so neither always runs on a daemon just busied by the other.
            if i % 2:
                (to_running, to_event), (direct_s, direct_id) = await via_agent(), direct_run()
            else:
                (direct_s, direct_id), (to_running, to_event) = direct_run(), await via_agent()
            if i >= 0:
                agent_ms.append(to_running * 1000)
                direct_ms.append(direct_s * 1000)
                event_ms.append(to_event * 1000)
            for name in (containers_mod.container_name(ws, host_id), direct_id):
                client.api.remove_container(name, force=True)
    finally:
        await events.close()
        await commands.close()
    a, d = statistics.median(agent_ms), statistics.median(direct_ms)
    return {
        "rounds": rounds,
        "fetch_max_wait_s": fetch_max_wait,
        "agent_median_ms": round(a, 1),
        "agent_p90_ms": round(sorted(agent_ms)[int(0.9 * (len(agent_ms) - 1))], 1),
        "direct_median_ms": round(d, 1),
        "direct_p90_ms": round(sorted(direct_ms)[int(0.9 * (len(direct_ms) - 1))], 1),
        "overhead_median_ms": round(a - d, 1),
        # Docker's own start time varies by ±100 ms here; the paired difference is the steadier figure.
        "overhead_paired_median_ms": round(statistics.median(x - y for x, y in zip(agent_ms, direct_ms, strict=True)), 1),
        "ratio": round(a / d, 2),
        "running_event_median_ms": round(statistics.median(event_ms), 1),
    }


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.create_direct", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--fetch-max-wait", type=float, default=0.5, help="the agent's commands.fetch_max_wait (default: the product's)")
    args = parser.parse_args(argv)
    with env_mod.BenchEnv() as env:
        result = asyncio.run(measure(env, args.rounds, args.fetch_max_wait))
    print(f"\ncommand → container running, {result['rounds']} rounds, commands.fetch_max_wait = {result['fetch_max_wait_s']} s")
    print(f"  agent  (from publish):       median {result['agent_median_ms']:7.1f} ms   p90 {result['agent_p90_ms']:7.1f} ms")
    print(f"  direct (containers.run):     median {result['direct_median_ms']:7.1f} ms   p90 {result['direct_p90_ms']:7.1f} ms")
    verdict = "meets" if result["overhead_median_ms"] < TARGET_OVERHEAD_MS else "misses"
    print(f"  overhead median {result['overhead_median_ms']:.1f} ms ({verdict} the < {TARGET_OVERHEAD_MS:.0f} ms target), ratio ×{result['ratio']}")
    print(f"  paired overhead (median of per-round differences): {result['overhead_paired_median_ms']:.1f} ms")
    print(f"  running event seen by a consumer: median {result['running_event_median_ms']:.1f} ms after publish")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
