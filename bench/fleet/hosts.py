"""Simulated hosts: enrolled straight into the database, and their signed reports, as agents would send them.

Each host gets a row in ``hosts`` with its own signing key (what enrolment
leaves behind), and three reports built once: a heartbeat, a disk report and
an inventory of a few a4c containers and images — about the size a real
agent sends for a host running a handful of workspaces. Every send signs a
fresh envelope (its own ``issued_at``, a ``seq`` that only rises) the way
:func:`shared.messages.encode` does, with the host's key, so the control
plane verifies and applies each one for real.
"""

from __future__ import annotations

import dataclasses
import decimal
import time
import uuid

import asyncpg

from shared import messages, signing

KINDS = (messages.EventKind.HEARTBEAT, messages.EventKind.DISK, messages.EventKind.INVENTORY)
CONTAINERS_PER_HOST = 5
IMAGES_PER_HOST = 4


@dataclasses.dataclass
class Host:
    id: str
    name: str
    key: str
    disk: messages.DiskReport
    inventory: messages.Inventory
    seq: messages.SeqClock = dataclasses.field(default_factory=messages.SeqClock)
    started: float = dataclasses.field(default_factory=time.time)

    def payload(self, kind: messages.EventKind) -> messages._Model:
        if kind is messages.EventKind.HEARTBEAT:
            return messages.Heartbeat(
                agent_version="bench",
                uptime_s=time.time() - self.started,
                cpus=64,
                memory_mb=262_144,
                labels={"rack": f"r{int(self.name.rsplit('-', 1)[1]) % 40}"},
            )
        return self.disk if kind is messages.EventKind.DISK else self.inventory

    def event(self, kind: messages.EventKind, issued_at: float | None = None) -> tuple[bytes, int]:
        """(signed message, its seq): :func:`shared.messages.encode`'s two steps, with ``issued_at`` settable
        so a message can be signed ahead of its planned send time."""
        seq = self.seq.next()
        env = messages.Envelope(kind=kind.value, host_id=self.id, seq=seq, payload=self.payload(kind).model_dump(mode="json"))
        if issued_at is not None:
            env.issued_at = issued_at
        return signing.sign(env.model_dump(mode="json"), self.key), seq


def make(count: int, prefix: str) -> list[Host]:
    hosts = []
    for n in range(count):
        host_id = str(uuid.uuid4())
        containers = [
            messages.ContainerInfo(
                container_id=uuid.uuid4().hex * 2,
                workspace_id=str(uuid.uuid4()),
                job_id=str(uuid.uuid4()),
                name=f"a4c-{host_id[:8]}-ws{c}",
                image=f"registry.example/team/ws-{c}:2026.11",
                state="running",
                created_at="2026-11-25T08:00:00Z",
                ports=[messages.PublishedPort(container_port=8080, host_ip="0.0.0.0", host_port=32768 + c)],
            )
            for c in range(CONTAINERS_PER_HOST)
        ]
        images = [
            messages.ImageInfo(
                image_id="sha256:" + uuid.uuid4().hex * 2,
                tags=[f"registry.example/team/ws-{i}:2026.11"],
                a4c_image=f"ws-{i}",
                size_bytes=1_500_000_000 + i,
            )
            for i in range(IMAGES_PER_HOST)
        ]
        disk = messages.DiskReport(
            paths=[
                messages.PathUsage(
                    path="/var/lib/docker",
                    total_bytes=2_000_000_000_000,
                    used_bytes=600_000_000_000 + n,
                    free_bytes=1_400_000_000_000 - n,
                    percent=30.0,
                )
            ],
            docker={"images": 6_000_000_000, "containers": 800_000_000, "volumes": 0, "build_cache": 2_000_000_000},
            workspaces={c.workspace_id: 100_000_000 for c in containers if c.workspace_id},
        )
        hosts.append(Host(host_id, f"{prefix}-host-{n:05d}", signing.new_key(), disk, messages.Inventory(containers=containers, images=images)))
    return hosts


async def enrol(database_url: str, hosts: list[Host]) -> None:
    """What enrolment leaves in ``hosts``: an active row with the host's key and capacity (COPY: 2,000 rows in well under a second)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table(
            "hosts",
            columns=["id", "name", "status", "signing_key", "agent_version", "capacity_cpus", "capacity_memory_mb", "capacity_disk_bytes"],
            records=[(uuid.UUID(h.id), h.name, "active", h.key, "bench", decimal.Decimal(64), 262_144, 2_000_000_000_000) for h in hosts],
        )
    finally:
        await conn.close()
