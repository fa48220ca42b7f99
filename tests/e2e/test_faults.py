"""Fault tests: each ends with PostgreSQL, the Docker daemon and the API in agreement.

Messages are hints; reconciliation heals. Every
test injects one fault into the running system of two control-plane
instances and two agents, then waits (with a deadline) for agreement.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import typing
import urllib.parse
import uuid

import aiohttp
import aiokafka
import asyncpg
import psutil
import pytest
from aiokafka import admin as aiokafka_admin

from shared import failpoints, signing, topics
from tests.e2e import system
from tests.harness import processes, wait


# This module stops or restarts its broker: it gets one of its own, not the run's shared one.
@pytest.fixture(scope="module")
def kafka_broker(module_kafka_broker):
    return module_kafka_broker


@pytest.fixture(scope="module")
def kafka_bootstrap(module_kafka_broker) -> str:
    return module_kafka_broker.bootstrap


HEAL = 60.0  # seconds: a few reconcile periods (1 s) plus ack timeouts (6 s) and rebalances


async def _create(sys_, name: str, **extra) -> dict:
    body = {"name": name, "image_ref": sys_.workspace_image, "cpus": 0.1, "memory_mb": 32, "disk_gb": 1, **extra}
    return await sys_.api.post("/v1/workspaces", body, expect=202)


async def _agree(sys_, message: str) -> None:
    host_ids = [a.host_id for a in sys_.agents]

    async def agreed() -> bool:
        problems = await system.agreement(sys_.api, sys_.docker_client, host_ids)
        if problems:
            raise AssertionError(problems)
        return True

    await wait.eventually(agreed, timeout=HEAL, interval=0.5, message=message)


async def _running(sys_, ws_id: str, timeout: float = HEAL, api: system.Api | None = None) -> dict:
    api = api or sys_.api

    async def check() -> dict | None:
        ws = await api.get(f"/v1/workspaces/{ws_id}")
        return ws if ws["observed_state"] == "running" else None

    return await wait.eventually(check, timeout=timeout, interval=0.3, message=f"workspace {ws_id} running")


def _agent_of(sys_, host_id: str) -> system.Agent:
    return next(a for a in sys_.agents if a.host_id == host_id)


RELAY_FAILPOINT = "relay.after_publish"


async def _job_succeeded(sys_, job_id: str) -> dict:
    async def check() -> dict | None:
        job = await sys_.api.get(f"/v1/jobs/{job_id}")
        return job if job["status"] == "succeeded" else None

    return await wait.eventually(check, timeout=HEAL, interval=0.3, message=f"job {job_id} succeeded")


# --- PostgreSQL, read directly: what the API does not show (outbox rows, keys) --


def _database_url(sys_) -> str:
    return sys_.planes[0].config["database"]["url"]


async def _query(sys_, sql: str, *args: typing.Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(_database_url(sys_))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _created(sys_, name: str) -> tuple[str, str, str]:
    """(workspace id, host id, create job id) of the workspace ``name``, from PostgreSQL."""
    rows = await _query(
        sys_,
        "SELECT w.id::text AS ws, w.host_id::text AS host, j.id::text AS job FROM workspaces w"
        " JOIN jobs j ON j.workspace_id = w.id AND j.kind = 'workspace_create' WHERE w.name = $1",
        name,
    )
    assert len(rows) == 1, f"one workspace {name!r} with one create job, got {[dict(r) for r in rows]}"
    return rows[0]["ws"], rows[0]["host"], rows[0]["job"]


async def _command_row(sys_, host_id: str, job_id: str) -> asyncpg.Record:
    """The first command row written for ``job_id`` (a later re-issue would get a row and a message id of its own)."""
    rows = await _query(
        sys_,
        "SELECT id, published_at, payload->>'id' AS message_id FROM outbox"
        " WHERE topic = $1 AND payload->'payload'->>'job_id' = $2 ORDER BY id LIMIT 1",
        f"commands.{host_id}",
        job_id,
    )
    assert rows, f"no command row for job {job_id}"
    return rows[0]


async def _signing_key(sys_, host_id: str) -> str:
    return (await _query(sys_, "SELECT signing_key FROM hosts WHERE id = $1::uuid", host_id))[0]["signing_key"]


@contextlib.asynccontextmanager
async def _paused(sys_, plane: system.ControlPlane) -> typing.AsyncIterator[None]:
    """``plane``'s process stopped (SIGSTOP) at a moment it holds no open database transaction.

    Paused inside a transaction it could hold the placement lock or a row lock
    the other instance needs, and the test would hang instead of testing; so a
    pause that catches it mid-transaction is undone and tried again.
    """
    assert plane.process is not None
    pid = plane.process.pid
    db_port = urllib.parse.urlsplit(_database_url(sys_)).port or 5432

    async def paused_between_transactions() -> bool:
        os.kill(pid, signal.SIGSTOP)
        proc = psutil.Process(pid)
        ports = [
            c.laddr.port for p in (proc, *proc.children(recursive=True)) for c in p.net_connections(kind="tcp") if c.raddr and c.raddr.port == db_port
        ]
        assert ports, f"{plane.name} has no database connection to port {db_port}"
        busy = await _query(sys_, "SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[]) AND xact_start IS NOT NULL", ports)
        if busy:
            os.kill(pid, signal.SIGCONT)
            return False
        return True

    try:
        await wait.eventually(paused_between_transactions, timeout=20, interval=0.05, message=f"{plane.name} paused between transactions")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# --- Kafka, read and written directly (no consumer group: nothing is committed) -


def _bootstrap(sys_) -> list[str]:
    return sys_.planes[0].config["kafka"]["bootstrap_servers"]


@contextlib.asynccontextmanager
async def _admin(sys_) -> typing.AsyncIterator[aiokafka_admin.AIOKafkaAdminClient]:
    client = aiokafka_admin.AIOKafkaAdminClient(bootstrap_servers=_bootstrap(sys_))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _end_offsets(sys_, topic: str) -> dict[aiokafka.TopicPartition, int]:
    async with _admin(sys_) as admin:
        described = await admin.describe_topics([topic])
    parts = [aiokafka.TopicPartition(topic, p["partition"]) for t in described if t["topic"] == topic for p in t["partitions"]]
    assert parts, f"topic {topic} has no partitions"
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=_bootstrap(sys_), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets(parts)
    finally:
        await consumer.stop()


async def _records(sys_, topic: str, since: dict[aiokafka.TopicPartition, int] | None = None) -> list[typing.Any]:
    """Every record of ``topic`` (from ``since``, else the beginning) up to its end now, oldest first."""
    end = await _end_offsets(sys_, topic)
    start = {tp: (since or {}).get(tp, 0) for tp in end}
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=_bootstrap(sys_), group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[typing.Any] = []
    try:
        consumer.assign(list(end))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        wanted = [tp for tp in end if start[tp] < end[tp]]

        async def read_to_end() -> bool:
            batch = await consumer.getmany(*wanted, timeout_ms=200)
            for tp, got in batch.items():
                records.extend(r for r in got if r.offset < end[tp])
            return all([await consumer.position(tp) >= end[tp] for tp in wanted])

        if wanted:
            await wait.eventually(read_to_end, timeout=30, interval=0.05, message=f"{topic} read to its end")
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset))


async def _on_kafka(sys_, host_id: str, message_id: str) -> int:
    """How many times the command ``message_id`` is on the host's command topic."""
    records = await _records(sys_, topics.Topics(sys_.prefix).commands(host_id))
    return sum(1 for r in records if signing.peek(r.value).get("id") == message_id)


def _host_of(record: typing.Any) -> str | None:
    return signing.peek(record.value).get("host_id")


def _about(record: typing.Any, ws_id: str) -> bool:
    body = signing.peek(record.value)
    return body.get("kind") == "workspace.state" and body.get("payload", {}).get("workspace_id") == ws_id


async def _publish(sys_, replay: list[tuple[typing.Any, bytes]]) -> dict[aiokafka.TopicPartition, int]:
    """Publish each value to its original record's partition, in list order; returns the offset after the last one per partition."""
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=_bootstrap(sys_), acks="all")
    await producer.start()
    written: dict[aiokafka.TopicPartition, int] = {}
    try:
        for original, value in replay:
            meta = await producer.send_and_wait(original.topic, value=value, key=original.key, partition=original.partition)
            tp = aiokafka.TopicPartition(meta.topic, meta.partition)
            written[tp] = max(written.get(tp, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return written


async def _committed(sys_, group: str, parts: list[aiokafka.TopicPartition]) -> dict[aiokafka.TopicPartition, int]:
    async with _admin(sys_) as admin:
        offsets = await admin.list_consumer_group_offsets(group, partitions=parts)
    return {tp: meta.offset for tp, meta in offsets.items()}


async def _rejected_events(sys_) -> float:
    """Agent events rejected (bad signature, schema, unknown host), summed over the instances."""
    total = 0.0
    async with aiohttp.ClientSession() as session:
        for plane in sys_.planes:
            async with session.get(f"{plane.url}/metrics") as resp:
                text = await resp.text()
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("a4c_events_rejected_total{"))
    return total


async def _snapshot(sys_, ws_id: str) -> dict[str, typing.Any]:
    """The workspace, its jobs and its containers, as PostgreSQL (through the API) and Docker show them."""
    containers = sys_.docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws_id}"})
    return {
        "workspace": await sys_.api.get(f"/v1/workspaces/{ws_id}"),
        "jobs": (await sys_.api.get(f"/v1/jobs?workspace_id={ws_id}&limit=200"))["items"],
        "containers": sorted((c.id, c.status) for c in containers),
    }


async def test_an_agent_killed_mid_create_ends_with_exactly_one_container(a4c_system):
    sys_ = a4c_system
    accepted = await _create(sys_, "crash-create")
    agent = _agent_of(sys_, accepted["workspace"]["host_id"])

    # Kill the agent as soon as it has acknowledged the command (job running).
    async def acknowledged() -> bool:
        job = await sys_.api.get(f"/v1/jobs/{accepted['job']['id']}")
        return job["status"] in ("running", "succeeded")

    await wait.eventually(acknowledged, timeout=30, interval=0.05, message="the agent acknowledged the create")
    agent.kill()
    agent.start()
    await _running(sys_, accepted["workspace"]["id"])
    await _agree(sys_, "agreement after the agent was killed mid-create")


async def test_a_command_lost_with_the_broker_is_reissued(a4c_system, kafka_broker):
    sys_ = a4c_system
    host_id = sys_.agents[0].host_id
    # Cordon the other host so placement must choose the stopped one.
    other = sys_.agents[1].host_id
    await sys_.api.post(f"/v1/hosts/{other}/cordon")
    agent = sys_.agents[0]
    try:
        agent.stop()
        accepted = await _create(sys_, "lost-command")
        assert accepted["workspace"]["host_id"] == host_id

        # The command sits in the topic; a broker that loses its data loses it for good.
        async def published() -> bool:
            return not await _query(sys_, "SELECT id FROM outbox WHERE published_at IS NULL AND topic = $1", f"commands.{host_id}")

        await wait.eventually(published, timeout=20, message="the create command was published")
        kafka_broker.restart(lose_data=True)
        agent.start()
        await _running(sys_, accepted["workspace"]["id"], timeout=90)
    finally:
        await sys_.api.post(f"/v1/hosts/{other}/uncordon")
    await _agree(sys_, "agreement after a command was lost with the broker")


async def test_a_container_removed_behind_the_agents_back_makes_the_workspace_lost_until_its_owner_recreates_it(a4c_system):
    sys_ = a4c_system
    accepted = await _create(sys_, "vanishing")
    ws_id = accepted["workspace"]["id"]
    ws = await _running(sys_, ws_id)
    host_id = ws["host_id"]
    sys_.docker_client.containers.get(ws["container_id"]).remove(force=True)

    async def lost() -> dict | None:
        got = await sys_.api.get(f"/v1/workspaces/{ws_id}")
        return got if got["observed_state"] == "lost" else None

    marked = await wait.eventually(lost, timeout=HEAL, interval=0.5, message="the workspace is lost, not silently re-created")
    assert "disappeared" in marked["state_reason"] and "files are gone" in marked["state_reason"], marked["state_reason"]

    # Inventories (every 1.5 s here) keep coming after the mark, and still no container:
    # nothing re-created it behind the owner's back.
    seen = (await _query(sys_, "SELECT inventory_at FROM hosts WHERE id = $1", uuid.UUID(host_id)))[0]["inventory_at"]

    async def later_inventories() -> bool:
        rows = await _query(sys_, "SELECT inventory_at FROM hosts WHERE id = $1", uuid.UUID(host_id))
        return rows[0]["inventory_at"] is not None and rows[0]["inventory_at"] > seen + datetime.timedelta(seconds=3)

    await wait.eventually(later_inventories, timeout=30, interval=0.5, message="two more inventories arrive")
    assert not sys_.docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws_id}"})
    assert (await sys_.api.get(f"/v1/workspaces/{ws_id}"))["observed_state"] == "lost"

    again = await sys_.api.post(f"/v1/workspaces/{ws_id}/recreate", expect=202)
    await _running(sys_, again["workspace"]["id"])
    await _agree(sys_, "agreement after a vanished container was recreated by its owner")


async def test_an_orphan_a4c_container_started_by_hand_is_removed_after_the_grace_period(a4c_system):
    sys_ = a4c_system
    host_id = sys_.agents[0].host_id
    orphan_ws = str(uuid.uuid4())
    container = sys_.docker_client.containers.run(
        sys_.workspace_image,
        detach=True,
        name=f"a4c-{orphan_ws}",
        labels={"a4c.workspace": orphan_ws, "a4c.host": host_id, "a4c.managed": "true"},
    )

    def gone() -> bool:
        return not sys_.docker_client.containers.list(all=True, filters={"id": container.id})

    await wait.eventually(gone, timeout=HEAL, interval=0.5, message="the orphan is removed after orphan_grace")
    await _agree(sys_, "agreement after an orphan was removed")


async def test_a_control_plane_instance_killed_mid_relay_loses_no_command(a4c_system, monkeypatch):
    sys_ = a4c_system
    plane, survivor = sys_.planes
    api1 = system.Api(survivor.url, sys_.api.headers["Authorization"].split()[1])
    # Restart instance 0 with the relay's fail point armed: it dies the moment its
    # relay has published a batch to Kafka and not yet marked it sent. Only its
    # process gets the variable (Popen copies the environment at spawn).
    plane.stop()
    with monkeypatch.context() as env:
        env.setenv(failpoints.ENV_VAR, f"{RELAY_FAILPOINT}=exit")
        plane.start()
    try:
        assert plane.process.poll() is None, f"instance 0 hit the fail point before the create:\n{processes.log_tail(plane.log)}"
        # Pause instance 1 so that instance 0's relay is the one that claims the
        # create's outbox rows (with both running, either may win the claim).
        async with _paused(sys_, survivor):
            try:
                await _create(sys_, "relay-kill")
            except aiohttp.ClientError:
                pass  # the relay may kill instance 0 before the 202 is written; the rows are committed either way

            def died() -> int | None:
                return plane.process.poll()

            code = await wait.eventually(died, timeout=30, interval=0.05, message="instance 0 dies at the relay fail point")
            log = plane.log.read_text(errors="replace")
            assert code == failpoints.EXIT_CODE, f"instance 0 exited with {code}, not at the fail point:\n{processes.log_tail(plane.log)}"
            assert f"failpoint {RELAY_FAILPOINT} triggered" in log
            ws_id, host_id, job_id = await _created(sys_, "relay-kill")
            command = await _command_row(sys_, host_id, job_id)
            # The kill landed mid-relay: the command is on Kafka, yet its row is
            # unpublished (no relay is left that could have marked it).
            assert command["published_at"] is None, "the dead relay's claim was rolled back"
            # At least once: without an idempotent producer, a send retried
            # under load may already have put more than one copy there.
            before_death = await _on_kafka(sys_, host_id, command["message_id"])
            assert before_death >= 1, "instance 0 published the command before it died"
            # When instance 1 was let go, to tell a late count from a missing copy.
            resumed_at = datetime.datetime.now(datetime.UTC)

        # Instance 1 resumes: its relay claims the released rows and publishes them again.
        async def marked_sent() -> bool:
            return (await _command_row(sys_, host_id, job_id))["published_at"] is not None

        await wait.eventually(marked_sent, timeout=HEAL, interval=0.2, message="instance 1 marks the command row sent")
        # Marked sent means acknowledged with acks=all, so the copy is on the topic; still
        # the count polls to a deadline, never trusting one read of the topic.
        counts: list[int] = []

        async def republished() -> bool:
            counts.append(await _on_kafka(sys_, host_id, command["message_id"]))
            return counts[-1] > before_death

        try:
            await wait.eventually(republished, timeout=20, interval=0.5, message="instance 1's copy of the command on the topic")
        except AssertionError as exc:
            raise AssertionError(
                f"instance 1 re-published the same command (same message id): {before_death} copies before its"
                f" resume at {resumed_at:%H:%M:%S.%f}, {counts[-1:]} after; its log:\n{processes.log_tail(survivor.log)}"
            ) from exc
        ws = await _running(sys_, ws_id, api=api1)
        assert ws["host_id"] == host_id
        containers = sys_.docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws_id}"})
        assert [c.id for c in containers] == [ws["container_id"]], "the duplicate command made no second container"

        async def succeeded() -> dict | None:
            job = await api1.get(f"/v1/jobs/{job_id}")
            return job if job["status"] == "succeeded" else None

        await wait.eventually(succeeded, timeout=HEAL, interval=0.3, message="the create job succeeded")
    finally:
        if plane.process is not None and plane.process.poll() is None:
            plane.kill()  # still armed: it must not outlive the test with the fail point
        plane.start()  # unarmed, on the same port: later tests (and the admin API) expect instance 0
    await _agree(sys_, "agreement after a control-plane instance was killed mid-relay")


async def test_duplicate_and_reordered_agent_events_change_nothing(a4c_system):
    sys_ = a4c_system
    events = topics.Topics(sys_.prefix).events
    since = await _end_offsets(sys_, events)
    accepted = await _create(sys_, "replayed")
    ws_id = accepted["workspace"]["id"]
    host_id = accepted["workspace"]["host_id"]
    await _running(sys_, ws_id)
    await _job_succeeded(sys_, accepted["job"]["id"])
    # Stop and start, so the history holds newer states over older ones.
    stop = await sys_.api.post(f"/v1/workspaces/{ws_id}/stop", expect=202)
    await _job_succeeded(sys_, stop["job"]["id"])
    start = await sys_.api.post(f"/v1/workspaces/{ws_id}/start", expect=202)
    await _job_succeeded(sys_, start["job"]["id"])
    await _running(sys_, ws_id)
    await _agree(sys_, "agreement before the replay")
    before = await _snapshot(sys_, ws_id)

    history = await _records(sys_, events, since)
    states = [json.loads(r.value)["payload"].get("state") for r in history if _about(r, ws_id)]
    assert {"creating", "running", "stopped"} <= set(states), f"the history holds the workspace's older states: {states}"
    key = await _signing_key(sys_, host_id)
    replay = []
    for record in reversed(history):
        # The same signed bytes again (duplicates), newest first (reordered),
        # and for this host each one also under a new message id, signed with
        # its key like the agent would: an older event the consumer has never
        # seen, which only its version guard (not a memory of ids) can refuse.
        replay.append((record, record.value))
        body = signing.verify(record.value, key) if _host_of(record) == host_id else None
        if body is not None:
            replay.append((record, signing.sign({**body, "id": uuid.uuid4().hex}, key)))
    rejected = await _rejected_events(sys_)
    written = await _publish(sys_, replay)

    async def consumed() -> bool:
        committed = await _committed(sys_, topics.Topics(sys_.prefix).controlplane_group, list(written))
        return all(committed.get(tp, -1) >= offset for tp, offset in written.items())

    await wait.eventually(consumed, timeout=HEAL, interval=0.3, message=f"the control plane consumed the {len(replay)} replayed events")
    assert await _rejected_events(sys_) == rejected, "the replayed events passed verification: they reached the appliers"
    after = await _snapshot(sys_, ws_id)
    assert after["workspace"]["observed_state"] == "running", "an older state event overwrote the newer state"
    assert after == before, "replayed events changed the workspace, its jobs or its containers"
    await _agree(sys_, "agreement after duplicate and reordered events")


async def test_a_stopped_agents_host_goes_down_its_workspaces_lost_and_both_come_back(a4c_system):
    sys_ = a4c_system
    agent = sys_.agents[1]
    host_id = agent.host_id
    other = sys_.agents[0].host_id
    await sys_.api.post(f"/v1/hosts/{other}/cordon")
    try:
        accepted = await _create(sys_, "survivor")
        assert accepted["workspace"]["host_id"] == host_id
    finally:
        await sys_.api.post(f"/v1/hosts/{other}/uncordon")
    ws_id = accepted["workspace"]["id"]
    await _running(sys_, ws_id)
    agent.stop()

    async def down_and_lost() -> bool:
        host = await sys_.api.get(f"/v1/hosts/{host_id}")
        ws = await sys_.api.get(f"/v1/workspaces/{ws_id}")
        return host["status"] == "down" and ws["observed_state"] == "lost"

    await wait.eventually(down_and_lost, timeout=40, interval=0.5, message="host down and its workspace lost")
    # Lost workspaces are not recreated elsewhere: people's work lives there.
    assert len(sys_.docker_client.containers.list(all=True, filters={"label": f"a4c.workspace={ws_id}"})) == 1
    agent.start()

    async def back() -> bool:
        host = await sys_.api.get(f"/v1/hosts/{host_id}")
        ws = await sys_.api.get(f"/v1/workspaces/{ws_id}")
        return host["status"] == "active" and ws["observed_state"] == "running"

    await wait.eventually(back, timeout=HEAL, interval=0.5, message="host active and workspace running again")
    await _agree(sys_, "agreement after the host came back")


async def test_an_operator_recreates_a_lost_workspace_elsewhere_and_the_old_copy_is_cleaned_when_its_host_returns(a4c_system):
    sys_ = a4c_system
    agent, other = sys_.agents[0], sys_.agents[1]
    await sys_.api.post(f"/v1/hosts/{other.host_id}/cordon")
    try:
        accepted = await _create(sys_, "moved")
    finally:
        await sys_.api.post(f"/v1/hosts/{other.host_id}/uncordon")
    ws_id = accepted["workspace"]["id"]
    assert accepted["workspace"]["host_id"] == agent.host_id
    await _running(sys_, ws_id)
    refused = await sys_.api.call("POST", f"/v1/workspaces/{ws_id}/recreate", expect=409)
    assert refused["error"]["code"] == "not_lost"
    agent.stop()

    async def lost() -> bool:
        return (await sys_.api.get(f"/v1/workspaces/{ws_id}"))["observed_state"] == "lost"

    await wait.eventually(lost, timeout=40, interval=0.5, message="the workspace is lost with its host")
    again = await sys_.api.post(f"/v1/workspaces/{ws_id}/recreate", expect=202)
    assert again["workspace"]["host_id"] == other.host_id, again["workspace"]["state_reason"]
    ws = await _running(sys_, ws_id)
    assert ws["host_id"] == other.host_id
    agent.start()
    await _agree(sys_, "the old copy is removed as an orphan when its host returns; one container remains")


# --- "I cannot hear them" is not "they are dead" ----------------


async def _metric(sys_, name: str, reduce: typing.Callable[[list[float]], float] = sum) -> float:
    """``name``'s samples (any labels) over both instances, reduced (summed by default)."""
    values = []
    async with aiohttp.ClientSession() as session:
        for plane in sys_.planes:
            async with session.get(f"{plane.url}/metrics") as resp:
                text = await resp.text()
            values += [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith((name + " ", name + "{"))]
    return reduce(values) if values else 0.0


def _log_ends(sys_) -> list[int]:
    return [plane.log.stat().st_size for plane in sys_.planes]


def _hosts_marked_down(sys_, since: list[int]) -> list[str]:
    """The "host … is down" lines the instances logged after ``since`` (from :func:`_log_ends`)."""
    lines = []
    for plane, start in zip(sys_.planes, since, strict=True):
        with plane.log.open("rb") as fh:
            fh.seek(start)
            lines += [line for line in fh.read().decode(errors="replace").splitlines() if " is down: " in line]
    return lines


async def _passes_after(sys_, count: int) -> None:
    """Wait for ``count`` more reconcile passes (both instances together): proof that time passed."""
    start = await _metric(sys_, "a4c_reconciler_passes_total")

    async def done() -> bool:
        return await _metric(sys_, "a4c_reconciler_passes_total") >= start + count

    await wait.eventually(done, timeout=count + 30, interval=0.5, message=f"{count} more reconcile passes")


async def _all_active(sys_) -> list[dict]:
    hosts = [await sys_.api.get(f"/v1/hosts/{a.host_id}") for a in sys_.agents]
    assert all(h["status"] == "active" for h in hosts), [(h["name"], h["status"]) for h in hosts]
    return hosts


async def test_a_clock_240_s_behind_keeps_its_host_active_and_a_vanished_container_is_seen_within_a_period(a4c_system, monkeypatch):
    sys_ = a4c_system
    agent, other = sys_.agents[0], sys_.agents[1]
    events = topics.Topics(sys_.prefix).events
    await sys_.api.post(f"/v1/hosts/{other.host_id}/cordon")
    try:
        accepted = await _create(sys_, "skewed")
    finally:
        await sys_.api.post(f"/v1/hosts/{other.host_id}/uncordon")
    ws_id = accepted["workspace"]["id"]
    assert accepted["workspace"]["host_id"] == agent.host_id
    await _running(sys_, ws_id)
    logs = _log_ends(sys_)
    agent.stop()
    since = await _end_offsets(sys_, events)
    restarted = datetime.datetime.now(datetime.UTC)
    with monkeypatch.context() as env:
        env.setenv("A4C_CLOCK_OFFSET", "-240")  # only this agent's process gets it (Popen copies the environment)
        agent.start()
    try:

        async def heard_again() -> bool:
            rows = await _query(sys_, "SELECT last_heartbeat_at FROM hosts WHERE id = $1::uuid", agent.host_id)
            return rows[0]["last_heartbeat_at"] > restarted + datetime.timedelta(seconds=2)

        await wait.eventually(heard_again, timeout=60, interval=0.5, message="heartbeats from the skewed agent")
        mine = [signing.peek(r.value) for r in await _records(sys_, events, since) if _host_of(r) == agent.host_id]
        assert mine and all(b["issued_at"] < restarted.timestamp() - 200 for b in mine), "the agent's clock is 240 s behind"
        # Longer than host_down_after (8 s) in passes: the skewed host stays active, nothing is lost.
        await _passes_after(sys_, 30)
        await _all_active(sys_)
        assert (await sys_.api.get(f"/v1/workspaces/{ws_id}"))["observed_state"] == "running"
        assert not _hosts_marked_down(sys_, logs)

        # Healing is not held back by the skew: a container removed by hand is noticed within a period or two.
        ws = await sys_.api.get(f"/v1/workspaces/{ws_id}")
        sys_.docker_client.containers.get(ws["container_id"]).remove(force=True)

        async def lost() -> dict | None:
            got = await sys_.api.get(f"/v1/workspaces/{ws_id}")
            return got if got["observed_state"] == "lost" else None

        marked = await wait.eventually(lost, timeout=15, interval=0.3, message="the vanished container noticed (not 240 s later)")
        assert "disappeared" in marked["state_reason"], marked["state_reason"]
    finally:
        agent.stop()
        agent.start()  # its own clock again
    await sys_.api.post(f"/v1/workspaces/{ws_id}/recreate", expect=202)
    await _running(sys_, ws_id)
    await _agree(sys_, "agreement after the skewed agent")


async def test_a_broker_down_longer_than_the_host_down_time_marks_no_host_down_and_loses_no_workspace(a4c_system, kafka_broker):
    sys_ = a4c_system
    accepted = await _create(sys_, "unheard")
    ws_id = accepted["workspace"]["id"]
    await _running(sys_, ws_id)
    await _all_active(sys_)
    hosts = [a.host_id for a in sys_.agents]
    lost_sql = "SELECT id FROM workspaces WHERE observed_state = 'lost' AND host_id = ANY($1::uuid[])"
    lost_before = {r["id"] for r in await _query(sys_, lost_sql, hosts)}
    logs = _log_ends(sys_)
    kafka_broker.stop()
    try:
        # The reconcilers keep running and measure what they cannot hear, well past host_down_after (8 s).
        async def deaf() -> bool:
            return await _metric(sys_, "a4c_events_heard_behind_seconds", max) >= 20

        await wait.eventually(deaf, timeout=60, interval=0.5, message="20 s without hearing the agents")
        await _all_active(sys_)
        assert (await sys_.api.get(f"/v1/workspaces/{ws_id}"))["observed_state"] == "running"
    finally:
        kafka_broker.start()
    back = datetime.datetime.now(datetime.UTC)

    async def heartbeats_flow() -> bool:
        rows = await _query(sys_, "SELECT last_heartbeat_at FROM hosts WHERE id = ANY($1::uuid[])", [a.host_id for a in sys_.agents])
        return len(rows) == 2 and all(r["last_heartbeat_at"] > back for r in rows)

    await wait.eventually(heartbeats_flow, timeout=90, interval=0.5, message="heartbeats from both agents after the broker came back")
    await _passes_after(sys_, 20)  # past host_down_after again, now hearing everything
    await _all_active(sys_)
    rows = await _query(sys_, "SELECT status::text, down_since FROM hosts WHERE id = ANY($1::uuid[])", [a.host_id for a in sys_.agents])
    assert [(r["status"], r["down_since"]) for r in rows] == [("active", None)] * 2
    assert {r["id"] for r in await _query(sys_, lost_sql, hosts)} <= lost_before, "a workspace became lost"
    assert (await sys_.api.get(f"/v1/workspaces/{ws_id}"))["observed_state"] == "running"
    assert not _hosts_marked_down(sys_, logs), "a host was marked down (and back) during the outage"
    assert await _metric(sys_, "a4c_fleet_disruption", max) == 0
    await _agree(sys_, "agreement after the broker was down longer than the host-down time")
