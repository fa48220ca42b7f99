"""``python -m bench.fleet``: 2,000 simulated hosts report every 10 s into one control plane; event-consumer lag vs < 1 s.

One ``a4c-controlplane run`` (production defaults, the reconciler included)
on the test harness's Apache Kafka 4.1 broker (KRaft, from Maven Central's
jars) and a fresh database on the machine's PostgreSQL (or the harness's
embedded one when nothing answers on 127.0.0.1:5432). The hosts are enrolled by writing their rows (id, key, capacity)
straight into the database; a load generator in this process then publishes,
for every host, a heartbeat, a disk report and an inventory every
``--interval`` seconds, each on its own phase so the offered load is an even
``3 × hosts / interval`` events/s (600/s by default), each signed with the
host's key exactly as an agent signs it (bench/fleet/hosts.py).

Lag — the time from an event's ``issued_at`` to its being applied — is
measured two ways during the ``--duration`` s load:

* every heartbeat: a benchmark-only trigger NOTIFYs ``(host, seq)`` when
  the consumer applies one; PostgreSQL delivers it at commit, and its arrival
  minus the ``issued_at`` the generator stamped is that heartbeat's lag.
  Heartbeats share each host's partition with its disk reports and
  inventories, so they wait behind them;
* ``a4c_events_consumer_lag_seconds`` from ``/metrics`` every 0.5 s (the age
  of the newest event at the moment it was applied).

Target: lag < 1 s (verdicts on the heartbeat p99 and max).

Baseline, same run, same events: the raw apply rate of
``controlplane.events.consumer.handle_batch`` called in this process on
batches of 500 (what the consumer loop hands it) straight from memory —
signature check, parsing and the same transactions against the same
database, with no Kafka and no other work sharing the event loop. (The rate
of ``consumer.handle``, one transaction per event, is shown beside it.) That is the ceiling of the control
plane's apply path, so two ratios mean something:

* offered load / raw apply rate: the share of one consumer's capacity the
  fleet uses (near or above 1 means lag grows without bound);
* pipeline drain rate / raw apply rate: one full cycle (one report of each
  kind from every host) published at once after the load phase, and timed
  until ``a4c_events_applied_total`` has counted it — what Kafka, the
  consumer loop and the rest of the control plane's work (reconciler, HTTP)
  cost on top of applying.

The broker's raw produce→consume rate is not the baseline: Kafka moves
messages an order of magnitude faster than a Python consumer applies them,
so that ratio would only restate the apply cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import typing
import urllib.request

import aiokafka
import asyncpg
import psutil
from prometheus_client import parser as prom_parser

from bench import machine
from bench.create_e2e import stack as stack_mod
from bench.fleet import hosts as hosts_mod
from bench.fleet import profile
from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.events import consumer
from shared import messages, topics

TARGET_LAG_S = 1.0
# Past this lag the verdict is clear and the backlog only makes the run longer: stop the load early.
GIVE_UP_LAG_S = 20.0
GETMANY_RECORDS = 500  # what shared.consuming.consume asks getmany for

# Production defaults, except: the simulated inventories list containers no
# workspace row owns, and the reconciler must not start removing them while
# we measure (it still diffs every inventory, as it would in production).
PLANE: stack_mod.Config = {"reconciler": {"orphan_grace": 3600.0}}


def scrape(url: str) -> dict[str, float]:
    """The few /metrics samples we need: lag, applied and rejected totals."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {"lag": 0.0, "applied": 0.0, "rejected": 0.0}
    for family in prom_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "a4c_events_consumer_lag_seconds":
                out["lag"] = sample.value
            elif sample.name == "a4c_events_applied_total":
                out["applied"] += sample.value
            elif sample.name == "a4c_events_rejected_total":
                out["rejected"] += sample.value
    return out


async def ascrape(url: str) -> dict[str, float]:
    return await asyncio.to_thread(scrape, url)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def cycle(fleet: list[hosts_mod.Host]) -> list[tuple[hosts_mod.Host, bytes]]:
    """One report of each kind from every host, issued now."""
    return [(h, h.event(kind)[0]) for h in fleet for kind in hosts_mod.KINDS]


async def raw_apply_rates(database_url: str, fleet: list[hosts_mod.Host], batch: int) -> tuple[float, float]:
    """events/s in this process through consumer.handle_batch (``batch`` records at a time, as the consumer loop
    hands them over) and consumer.handle (a transaction per event): after a warm-up cycle (key cache, first
    inventories), one timed cycle of ``fleet`` batched, and one of a fifth of it one by one (it is slow).

    ``fleet`` is a sample: the rate per event does not depend on how many hosts there are.
    """
    settings = cp_settings.Settings.model_validate({"database": {"url": database_url}})
    engine = db_engine.create(settings.database)
    keys = consumer.HostKeys(engine)

    async def batched(raws: list[bytes]) -> list[typing.Any]:
        out: list[typing.Any] = []
        for i in range(0, len(raws), batch):
            out += await consumer.handle_batch(raws[i : i + batch], engine, keys, batch_size=settings.events.batch_size)
        return out

    try:
        applied = await batched([raw for _, raw in cycle(fleet)])
        timed = [raw for _, raw in cycle(fleet)]
        began = time.perf_counter()
        applied += await batched(timed)
        many = len(timed) / (time.perf_counter() - began)
        one_by_one = [raw for _, raw in cycle(fleet[: max(1, len(fleet) // 5)])]
        began = time.perf_counter()
        applied += [await consumer.handle(raw, engine, keys) for raw in one_by_one]
        single = len(one_by_one) / (time.perf_counter() - began)
    finally:
        await engine.dispose()
    if None in applied:
        raise SystemExit("the in-process baseline rejected events: the simulated hosts are not set up right")
    return single, many


class Load:
    """Every (host, kind) once per interval, each on its own phase, signed ahead of time and sent on schedule.

    Signing costs about as much CPU as applying (canonical JSON and an HMAC per
    message); done while the control plane runs, it would take a third of a
    core from it on this machine — CPU that 2,000 real agents spend on their
    own machines. So every message of the load phase is signed first, with
    ``issued_at`` set to its planned send time; a message sent late (the
    generator behind schedule) counts its lateness as lag.
    """

    def __init__(self, producer: aiokafka.AIOKafkaProducer, topic: str, fleet: list[hosts_mod.Host], interval: float) -> None:
        self.producer, self.topic, self.fleet, self.interval = producer, topic, fleet, interval
        self.sent = 0
        self.heartbeats: dict[tuple[str, int], float] = {}
        self.late_s = 0.0
        self._plan: list[tuple[float, hosts_mod.Host, bytes]] = []

    def sign(self, duration: float) -> float:
        """Sign every message of a ``duration``-s run; returns when (epoch s) the run must start."""
        slots = [(h, kind) for kind in hosts_mod.KINDS for h in self.fleet]
        step = self.interval / len(slots)
        total = int(duration / step)
        # A first batch tells how long signing all of them takes, so the run starts just after.
        probe = time.perf_counter()
        for n in range(min(200, total)):
            slots[n][0].event(slots[n][1], 0.0)
        start = time.time() + (time.perf_counter() - probe) / min(200, total) * total * 1.3 + 2.0
        for n in range(total):
            host, kind = slots[n % len(slots)]
            at = start + n * step
            raw, seq = host.event(kind, at)
            if kind is messages.EventKind.HEARTBEAT:
                self.heartbeats[(host.id, seq)] = at
            self._plan.append((at, host, raw))
        return start

    async def run(self, give_up: typing.Callable[[], bool]) -> None:
        """Send on schedule, or stop when ``give_up()`` says the consumer is hopelessly behind."""
        n = 0
        while n < len(self._plan) and not give_up():
            now = time.time()
            while n < len(self._plan) and self._plan[n][0] <= now:
                at, host, raw = self._plan[n]
                await self.producer.send(self.topic, raw, key=host.id.encode())
                self.late_s = max(self.late_s, time.time() - at)
                n += 1
            self.sent = n
            await asyncio.sleep(0.01)
        await self.producer.flush()


# Benchmark-only: a NOTIFY per applied heartbeat. PostgreSQL delivers it at
# commit, so its arrival is when the heartbeat became visible, however the
# consumer groups events into transactions.
_HEARTBEAT_NOTIFY = [
    """
    CREATE FUNCTION bench_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('bench_heartbeat', NEW.id::text || ' ' || NEW.last_event_seq::text);
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER bench_heartbeat AFTER UPDATE OF last_heartbeat_at ON hosts FOR EACH ROW EXECUTE FUNCTION bench_heartbeat()",
]


async def watch_heartbeats(database_url: str, load: Load, lags: list[tuple[float, float]]) -> asyncpg.Connection:
    """Listen for applied heartbeats; each one's lag is its arrival minus the issued_at the generator stamped."""
    conn = await asyncpg.connect(database_url)
    for statement in _HEARTBEAT_NOTIFY:
        await conn.execute(statement)

    def heard(_conn: typing.Any, _pid: int, _channel: str, payload: str) -> None:
        host_id, seq = payload.split()
        issued = load.heartbeats.get((host_id, int(seq)))
        if issued is not None:
            now = time.time()
            lags.append((now, now - issued))

    await conn.add_listener("bench_heartbeat", heard)
    return conn


async def watch_metrics(url: str, samples: list[float], stop: asyncio.Event, every: float = 0.5) -> None:
    while not stop.is_set():
        samples.append((await ascrape(url))["lag"])
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


async def wait_applied(url: str, target: float, timeout: float, every: float = 0.05) -> tuple[float, float]:
    """Poll until the applied counter reaches ``target``; returns (when, counter)."""
    deadline = time.monotonic() + timeout
    while True:
        applied = (await ascrape(url))["applied"]
        if applied >= target or time.monotonic() > deadline:
            return time.time(), applied
        await asyncio.sleep(every)


async def measure(
    s: stack_mod.Stack, fleet: list[hosts_mod.Host], interval: float, duration: float, baseline_hosts: int, profiling: bool
) -> dict[str, typing.Any]:
    assert s.plane is not None and s.broker is not None and s.plane.process is not None
    url = s.plane.url
    result: dict[str, typing.Any] = {"hosts": len(fleet), "interval_s": interval, "duration_s": duration}
    offered = len(hosts_mod.KINDS) * len(fleet) / interval
    result["offered_per_s"] = round(offered, 1)

    sample = fleet[:baseline_hosts]
    print(f"baseline: consumer.handle_batch and handle in-process, {len(sample) * len(hosts_mod.KINDS)} events ...", flush=True)
    single_rate, raw_rate = await raw_apply_rates(s.database_url, sample, GETMANY_RECORDS)
    result["raw_apply_single_per_s"] = round(single_rate, 1)
    result["raw_apply_per_s"] = round(raw_rate, 1)

    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=s.broker.bootstrap, linger_ms=5, acks="all")
    await producer.start()
    topic = topics.Topics(s.prefix).events
    cp = psutil.Process(s.plane.process.pid)
    try:
        before = await ascrape(url)
        load = Load(producer, topic, fleet, interval)
        print(f"signing {int(duration * offered)} events for the load phase ...", flush=True)
        start = load.sign(duration)
        timed_lags: list[tuple[float, float]] = []
        gauge: list[float] = []
        stop = asyncio.Event()
        listener = await watch_heartbeats(s.database_url, load, timed_lags)
        watchers = [asyncio.create_task(watch_metrics(url, gauge, stop))]
        print(f"load: {offered:.0f} events/s for {duration:.0f} s ...", flush=True)
        await asyncio.sleep(max(0.0, start - time.time()))
        cpu0, wall0 = cp.cpu_times(), time.monotonic()
        psutil.cpu_percent()
        spy = profile.start(s.plane.process.pid, min(duration, 30.0), s.workdir / "cp.pyspy") if profiling else None
        await load.run(give_up=lambda: bool(gauge) and gauge[-1] > GIVE_UP_LAG_S)
        result["load_s"] = round(time.monotonic() - wall0, 1)
        sent_at = time.time()
        at_end = (await ascrape(url))["applied"]
        target = before["applied"] + load.sent
        done_at, applied = await wait_applied(url, target, timeout=90)
        cpu1, wall1 = cp.cpu_times(), time.monotonic()
        machine_cpu = psutil.cpu_percent()
        stop.set()
        await asyncio.gather(*watchers)
        await listener.close()
        lags = [lag for _, lag in timed_lags]
        # The worst heartbeat lag of every 5 s of the run: spikes and their rhythm show up here.
        result["lag_max_per_5s"] = [
            round(max((lag for at, lag in timed_lags if start + w <= at < start + w + 5), default=0.0), 2)
            for w in range(0, int(max(at for at, _ in timed_lags) - start) + 1, 5)
        ]
        if spy is not None:
            spy.wait(timeout=120)
            result["profile"] = [f"{share:4.0f} %  {name}" for share, name in profile.summary(s.workdir / "cp.pyspy")]
        after = await ascrape(url)
        result.update(
            {
                "sent": load.sent,
                "applied": int(applied - before["applied"]),
                "rejected": int(after["rejected"] - before["rejected"]),
                "drain_after_last_send_s": round(done_at - sent_at, 2),
                "generator_late_max_s": round(load.late_s, 3),
                "heartbeats_sent": len(load.heartbeats),
                "heartbeats_observed": len(lags),
                "lag_p50_s": round(pct(lags, 50), 3),
                "lag_p99_s": round(pct(lags, 99), 3),
                "lag_max_s": round(max(lags), 3),
                "gauge_p50_s": round(pct(gauge, 50), 3),
                "gauge_p99_s": round(pct(gauge, 99), 3),
                "gauge_max_s": round(max(gauge), 3),
                "controlplane_cpu_percent": round(100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (wall1 - wall0), 1),
                "machine_cpu_percent": machine_cpu,
            }
        )

        backlog = target - at_end
        if applied < target or backlog > len(fleet):
            # It could not keep up: the catch-up after the load is the pipeline's drain rate, no burst needed.
            result.update({"backlog_at_end": int(backlog), "pipeline_drain_per_s": round((applied - at_end) / (done_at - sent_at), 1)})
            return finish(result, offered, raw_rate)

        # Burst: one whole cycle at once; how fast does the pipeline drain it?
        burst = cycle(fleet)
        base = (await ascrape(url))["applied"]
        print(f"burst: {len(burst)} events published at once ...", flush=True)
        t0 = time.time()
        for host, raw in burst:
            await producer.send(topic, raw, key=host.id.encode())
        await producer.flush()
        published = time.time()
        done_at, applied = await wait_applied(url, base + len(burst), timeout=90)
        drained = applied - base
        result.update(
            {
                "burst_events": len(burst),
                "burst_publish_s": round(published - t0, 2),
                "burst_applied": int(drained),
                "pipeline_drain_per_s": round(drained / (done_at - t0), 1),
            }
        )
    finally:
        await producer.stop()
    return finish(result, offered, raw_rate)


def finish(result: dict[str, typing.Any], offered: float, raw_rate: float) -> dict[str, typing.Any]:
    result["utilisation"] = round(offered / raw_rate, 2)
    result["pipeline_vs_raw"] = round(result["pipeline_drain_per_s"] / raw_rate, 2)
    return result


def report(r: dict[str, typing.Any]) -> None:
    print(
        f"\n{r['hosts']} hosts × (heartbeat, disk, inventory) every {r['interval_s']:g} s = {r['offered_per_s']:.0f} events/s for {r['duration_s']:g} s"
    )
    print(f"  baseline consumer.handle_batch in-process: {r['raw_apply_per_s']:7.0f} events/s  (offered load = ×{r['utilisation']} of it)")
    print(f"    (consumer.handle, a transaction per event: {r['raw_apply_single_per_s']:.0f} events/s)")
    source = f"of a {r['burst_events']}-event burst" if "burst_events" in r else f"of the {r['backlog_at_end']}-event backlog"
    print(f"  pipeline drain rate {source}: {r['pipeline_drain_per_s']:7.0f} events/s  (×{r['pipeline_vs_raw']} of the baseline)")
    if r["load_s"] < r["duration_s"] - 1:
        print(f"  LOAD STOPPED EARLY after {r['load_s']:.0f} s: the consumer fell more than {GIVE_UP_LAG_S:.0f} s behind")
    print(f"  machine load average {r['loadavg_1m']:.1f} (other work on this {psutil.cpu_count()}-core machine slows every figure)")
    print(
        f"  sent {r['sent']}, applied {r['applied']}, rejected {r['rejected']}; last event applied {r['drain_after_last_send_s']:.2f} s after the last send"
    )
    print(
        f"  heartbeat lag ({r['heartbeats_observed']}/{r['heartbeats_sent']} seen): p50 {r['lag_p50_s']:.3f} s  p99 {r['lag_p99_s']:.3f} s  max {r['lag_max_s']:.3f} s"
    )
    print(f"  a4c_events_consumer_lag_seconds samples: p50 {r['gauge_p50_s']:.3f} s  p99 {r['gauge_p99_s']:.3f} s  max {r['gauge_max_s']:.3f} s")
    print(f"  the generator sent up to {r['generator_late_max_s'] * 1000:.0f} ms behind schedule (counted in the lag)")
    print(f"  control plane CPU {r['controlplane_cpu_percent']:.0f} % of one core; machine {r['machine_cpu_percent']:.0f} % of all cores")
    print(f"  worst heartbeat lag per 5 s: {' '.join(f'{v:.2f}' for v in r['lag_max_per_5s'])}")
    for line in r.get("profile", []):
        print(f"    control plane, py-spy (inclusive share of samples): {line}")
    for label, key in (("p99", "lag_p99_s"), ("max", "lag_max_s")):
        value = r[key]
        verdict = "MEETS" if value < TARGET_LAG_S else f"MISSES (by {value - TARGET_LAG_S:.2f} s)"
        print(f"  VERDICT consumer lag {label}: {value:.3f} s — {verdict} the < {TARGET_LAG_S:g} s target")
    print(json.dumps(r))


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between two reports of one kind from one host")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of steady load")
    parser.add_argument("--baseline-hosts", type=int, default=1000, help="hosts whose events time the in-process baseline")
    parser.add_argument("--profile", action="store_true", help="sample the control plane with py-spy during the load (pip install py-spy)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    start_load = machine.load("start")
    with stack_mod.Stack(docker=False, plane=PLANE) as s:
        fleet = hosts_mod.make(args.hosts, s.prefix)
        asyncio.run(hosts_mod.enrol(s.database_url, fleet))
        result = asyncio.run(measure(s, fleet, args.interval, args.duration, args.baseline_hosts, args.profile))
    result["wall_s"] = round(time.monotonic() - began, 1)
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    result["load_average_start_end"] = [round(start_load[0], 2), round(machine.load("end")[0], 2)]
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
