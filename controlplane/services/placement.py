"""Race-free placement (findBestHost): rank in SQL, decide purely, hold the chosen host's allocation row, record why.

Allocations are maintained, not derived per decision (migration 0011): a
trigger keeps ``host_allocations`` equal to the sums over each host's live
(not deleted, not failed) workspaces in the same transaction as every
workspace change, and the reconciler checks that invariant
(controlplane/services/allocations.py). A workspace asked to stop releases its
CPUs and memory (its disk stays counted in the host's disk report); starting
it again checks that its host still has them (:func:`room_to_start`). Disk
"promised" is the quota of workspaces placed but not yet running, which the
host's last disk report cannot show yet.

Locking (docs/decisions/0011-maintained-allocations.md): no global lock. The
ranking runs unlocked; then :func:`place_one` locks the first ranked host's
allocation row that nobody else holds and that still has room by its current
values (``FOR UPDATE SKIP LOCKED``), so placements on different hosts run in
parallel and two on one host queue on its row, the second re-checking the
room the first left. The workspace INSERT's trigger then updates the held row.
A create in a transaction makes that claim in the ranking's own statement
(migration 0012's ``a4c_claim_host``, whose subtransaction lets go of any row
its re-check rejected when it takes none), so ranking and claiming cost one
round trip. The API's create in autocommit makes it in the statement that
inserts the workspace instead (:data:`HELD`,
docs/decisions/0016-a-create-in-autocommit-statements.md).

Scale: :func:`choose` does not load the whole fleet into Python, nor judge
all of it when a host fits. One SQL statement reads the hosts in order of
disk used before placement from an index, judges them with the same checks,
in the same order, as :mod:`controlplane.domain.placement` (first failing
check = its code) only up to the bound past which no host can rank among the
first ``RECORD_HOSTS`` (docs/decisions/0014-placement-examines-the-least-used-hosts.md;
the whole fleet when nothing fits), ranks the eligible ones the same way, and
returns only the top ``RECORD_HOSTS`` eligible hosts, the first
``RECORD_HOSTS`` rejected ones (by name) and the count per code among the
hosts examined. The pure decision then runs on that handful; it makes the
choice and writes the reasons. A test checks on random fleets that this
chooses and ranks exactly as the pure function does on the whole fleet, and
records exactly what it records on the hosts examined
(tests/controlplane/api/test_placement_sql.py), whose ground truth is
:func:`snapshot`, the whole fleet with the live aggregate.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import typing
import uuid

import orjson
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import settings as cp_settings
from controlplane.db import hot, positional
from controlplane.domain import placement as domain
from controlplane.services import placement_ranking as ranking

Session = sa_asyncio.AsyncSession
# Where a ranking runs: a session (in its transaction), or the hot pool (the API's autocommit create).
Executor = sa_asyncio.AsyncSession | hot.HotReads

# Arbitrary, fixed: the key of the advisory lock that serialises placing the
# pending queue (place_pending, uncordon, enrolment) among themselves ("a4c" + 1).
PLACEMENT_LOCK = 0x0A4C_0001
GB = domain.GiB
RECORD_HOSTS = ranking.RECORD_HOSTS

_SNAPSHOT = sa.text(
    """
    SELECT h.id, h.name, h.status::text AS status, h.cordoned, h.draining, h.labels,
           h.capacity_cpus, h.capacity_memory_mb, h.capacity_disk_bytes,
           h.disk_total_bytes, h.disk_used_bytes, h.last_heartbeat_at,
           coalesce(a.cpus, 0) AS alloc_cpus, coalesce(a.memory_mb, 0) AS alloc_memory_mb,
           coalesce(a.disk_gb, 0) AS alloc_disk_gb, coalesce(a.promised_gb, 0) AS promised_disk_gb,
           coalesce(a.n, 0) AS workspaces
    FROM hosts h
    LEFT JOIN (
        SELECT host_id, sum(cpus) FILTER (WHERE desired_state <> 'stopped') AS cpus,
               sum(memory_mb) FILTER (WHERE desired_state <> 'stopped') AS memory_mb, sum(disk_gb) AS disk_gb,
               sum(disk_gb) FILTER (WHERE observed_state IN ('pending', 'creating')) AS promised_gb,
               count(*) AS n
        FROM workspaces
        WHERE host_id IS NOT NULL AND observed_state NOT IN ('deleted', 'failed')
        GROUP BY host_id
    ) a ON a.host_id = h.id
    ORDER BY h.id
    """
)


@dataclasses.dataclass(frozen=True)
class Request:
    cpus: float
    memory_mb: int
    disk_gb: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A decision in the shape the API stores: chosen host (or None), one-line reason, JSON record."""

    host_id: uuid.UUID | None
    host_name: str | None
    reason: str
    record: dict[str, typing.Any]


async def lock(session: Session) -> None:
    """Serialise queue placers (two reconcilers would otherwise both pick the same pending workspaces); creates do not take it."""
    await session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PLACEMENT_LOCK})


async def snapshot(session: Session) -> list[domain.Host]:
    """Every host with its live allocation aggregated from workspaces, as the pure decision wants them (tests' ground truth)."""
    rows = (await session.execute(_SNAPSHOT)).all()
    return [
        domain.Host(
            id=r.id,
            name=r.name,
            status=r.status,
            last_heartbeat=r.last_heartbeat_at,
            capacity_cpus=float(r.capacity_cpus),
            capacity_memory_mb=r.capacity_memory_mb,
            capacity_disk_bytes=r.capacity_disk_bytes,
            cordoned=r.cordoned,
            draining=r.draining,
            allocated_cpus=float(r.alloc_cpus),
            allocated_memory_mb=int(r.alloc_memory_mb),
            disk_used_bytes=r.disk_used_bytes,
            promised_disk_bytes=int(r.promised_disk_gb) * GB,
            disk_total_bytes=r.disk_total_bytes,
            labels=r.labels or {},
        )
        for r in rows
    ]


# Room for the request by a host's allocation row as it is now (``a``: host_allocations,
# ``h``: hosts): the ranking's last three checks (controlplane/services/placement_ranking.py),
# re-checked on the row a placement holds, since one committed since the ranking may have filled it.
ROOM = """h.capacity_cpus - a.cpus >= :need_cpus AND h.capacity_memory_mb - a.memory_mb >= :memory_mb
      AND CASE WHEN h.disk_total_bytes <> 0 THEN h.disk_total_bytes ELSE h.capacity_disk_bytes END
          - h.disk_used_bytes - a.promised_gb * :gib >= :need_bytes"""

# The first of the ranked hosts whose allocation row nobody else holds and that
# still has room by its current row (a placement committed since the ranking may
# have filled it). Locked until commit: the workspace INSERT's trigger updates it.
# Used by queue placement, which holds several rows and never waits (no savepoint).
_CLAIM = sa.text(
    """
    SELECT a.host_id FROM host_allocations a JOIN hosts h ON h.id = a.host_id
    WHERE a.host_id = ANY(CAST(:hosts AS uuid[])) AND """  # noqa: S608 - built from constants only; the values are parameters
    + ROOM
    + """
    ORDER BY array_position(CAST(:hosts AS uuid[]), a.host_id)
    LIMIT 1
    FOR UPDATE OF a SKIP LOCKED
    """
)
# Wait for one host's row (every ranked one is held), then say whether it still has room.
_WAIT = sa.text(
    "SELECT "  # noqa: S608 - built from constants only; the values are parameters
    + ROOM
    + """ AS fits
    FROM host_allocations a JOIN hosts h ON h.id = a.host_id
    WHERE a.host_id = :host
    FOR UPDATE OF a
    """
)

# A create's claim made by the statement that inserts it (an autocommit create,
# controlplane/services/workspaces.py): the chosen host's allocation row, waited
# for while another placement holds it, if it still has room by its current
# values. The rows are inserted only if this has one (one_insert's guard); the
# row is held until the statement commits, its trigger having added the
# reservation. Holding no other row, it closes no cycle with another waiter.
HELD = (
    sa.text(
        "SELECT a.host_id FROM host_allocations a JOIN hosts h ON h.id = a.host_id WHERE a.host_id = :held_host AND "  # noqa: S608 - constants only
        + ROOM
        + " FOR UPDATE OF a"
    )
    .columns(host_id=sa.Uuid)
    .cte("held")
)


@functools.cache
def _candidates() -> positional.Statement:
    """The ranking as the hot pool sends it (an autocommit create ranks there, then claims in its insert); compiled on first use."""
    return positional.compile(ranking.CANDIDATES)


# Rounds of rank-then-claim before a create gives up and waits pending: each
# failed round means concurrent placements filled the host it waited for, so
# the fleet moved on; the next ranking sees that.
CLAIM_ROUNDS = 20


@dataclasses.dataclass(frozen=True)
class _Judged:
    request: Request
    now: datetime.datetime
    hosts: list[domain.Host]
    # Counts over the hosts examined: every host with fraction before at most ``up_to`` (None: the whole fleet).
    eligible: int
    rejected: dict[domain.Code, int]
    up_to: float | None
    # With ``claim``: the host whose row the ranking statement took (None: it took none).
    claimed: uuid.UUID | None = None


async def _judge(session: Executor, request: Request, settings: cp_settings.Settings, now: datetime.datetime, *, claim: bool = False) -> _Judged:
    params = {**_params(request), "stale_before": _stale_before(now, settings)}
    rows: typing.Sequence[typing.Mapping[str, typing.Any]]
    if isinstance(session, hot.HotReads):
        assert not claim, "a claim holds its row until its transaction ends: a session's"
        candidates = _candidates()
        rows = await session.fetch(candidates.sql, *candidates.args(params))
    else:
        rows = typing.cast(
            "typing.Sequence[typing.Mapping[str, typing.Any]]",
            (await session.execute(ranking.CANDIDATES_AND_CLAIM if claim else ranking.CANDIDATES, params)).mappings().all(),
        )
    counts: dict[str | None, int] = {r["code"]: r["code_count"] for r in rows}
    eligible = counts.pop(None, 0)
    rejected = {domain.Code(code): n for code, n in counts.items() if code is not None}
    claimed = rows[0]["claimed"] if claim and rows else None
    up_to = rows[0]["up_to"] if rows else None
    hosts = [_host(r) for r in rows]
    return _Judged(request, now, hosts, eligible, rejected, up_to, None if claimed is None else uuid.UUID(str(claimed)))


def _outcome(judged: _Judged, settings: cp_settings.Settings, *, skip: typing.Collection[uuid.UUID] = ()) -> Outcome:
    """The pure decision on the judged handful; ``skip``: ranked hosts another placement holds (noted in the reason)."""
    request = judged.request
    hosts = [h for h in judged.hosts if uuid.UUID(str(h.id)) not in skip]
    result = domain.place(
        domain.Request(cpus=request.cpus, memory_mb=request.memory_mb, disk_gb=request.disk_gb),
        hosts,
        judged.now,
        settings.placement,
        examined_up_to=judged.up_to,
    )
    record = result.to_record(limit=RECORD_HOSTS)
    examined = judged.eligible + sum(judged.rejected.values())
    record["eligible_count"], record["rejected_counts"] = judged.eligible, {code.value: n for code, n in judged.rejected.items()}
    record["examined"]["hosts"] = examined
    if result.host is None:
        record["reason"] = domain.summary(examined, judged.rejected)
        return Outcome(None, None, record["reason"], record)
    record["reason"] = domain.why(result.eligible, judged.eligible - len(skip), examined=None if judged.up_to is None else examined)
    if skip:
        names = sorted(h.name for h in judged.hosts if uuid.UUID(str(h.id)) in skip)
        record["reason"] += f"; {', '.join(names)} ranked higher but another placement was deciding there"
    return Outcome(uuid.UUID(str(result.host.id)), result.host.name, record["reason"], record)


async def choose(session: Executor, request: Request, settings: cp_settings.Settings, *, now: datetime.datetime | None = None) -> Outcome:
    """The decision for ``request`` over the whole fleet, at the cost of a few dozen hosts; takes no lock."""
    return _outcome(await _judge(session, request, settings, now or _now()), settings)


async def place_one(
    session: Session, request: Request, settings: cp_settings.Settings, *, wait: bool = True, now: datetime.datetime | None = None
) -> Outcome:
    """Decide for one new workspace and hold the chosen host's allocation row until commit.

    The caller inserts the workspace in the same transaction; its trigger adds
    the reservation to the held row. ``wait``: when every ranked host with room
    is held by another placement, wait for the best one (for callers holding
    no other allocation row: docs/decisions/0011-maintained-allocations.md);
    otherwise the workspace stays pending until the next pass.

    With ``wait``, the ranking statement also makes the claim (one round trip:
    the SQL ranking's order is the pure decision's, which the tests check);
    without, the claim is a statement of its own that holds what it rejects,
    since a caller that never waits cannot close a cycle.
    """
    judged = await _judge(session, request, settings, now or _now(), claim=wait)
    for _ in range(CLAIM_ROUNDS):
        outcome = _outcome(judged, settings)
        if outcome.host_id is None:
            return outcome
        ranked = [uuid.UUID(s["host_id"]) for s in outcome.record["eligible"]]
        params = _params(request)
        claimed = judged.claimed if wait else await _claim(session, ranked, params)
        if claimed is None and wait and await _wait_for(session, ranked[0], params):
            claimed = ranked[0]
        if claimed == outcome.host_id:
            return outcome
        if claimed is not None:
            return _outcome(judged, settings, skip=ranked[: ranked.index(claimed)])
        judged = await _judge(session, request, settings, now or _now(), claim=wait)
    outcome = _outcome(judged, settings, skip=[uuid.UUID(s["host_id"]) for s in _outcome(judged, settings).record["eligible"]])
    reason = f"every host with room was being placed on by other requests ({CLAIM_ROUNDS} tries); waiting for the next pass"
    return Outcome(None, None, reason, dict(outcome.record, host_id=None, host_name=None, reason=reason))


async def _claim(session: Session, ranked: list[uuid.UUID], params: dict[str, typing.Any]) -> uuid.UUID | None:
    """The first ranked host that is free and has room, its row now held; None if none is (rows the re-check rejected stay held)."""
    return typing.cast("uuid.UUID | None", (await session.execute(_CLAIM, {**params, "hosts": ranked})).scalar())


async def _wait_for(session: Session, host: uuid.UUID, params: dict[str, typing.Any]) -> bool:
    """Wait for ``host``'s allocation row; keep it (True) if it still has room, else let it go.

    In a savepoint, so a full host's row is released at once: a waiter holding
    rows it does not use could close a cycle with another waiter.
    """
    savepoint = await session.begin_nested()
    fits = (await session.execute(_WAIT, {**params, "host": host})).scalar()
    if fits:
        await savepoint.commit()
        return True
    await savepoint.rollback()
    return False


def held_params(request: Request, host: uuid.UUID) -> dict[str, typing.Any]:
    """The parameters of :data:`HELD` for ``request`` on ``host``."""
    return {**_params(request), "held_host": host}


def _params(request: Request) -> dict[str, typing.Any]:
    return {
        "gib": GB,
        # CPUs compare in exact milli-cores, as the pure decision does.
        "need_cpus": decimal.Decimal(round(float(request.cpus) * 1000)) / 1000,
        "memory_mb": request.memory_mb,
        "need_bytes": request.disk_gb * GB,
    }


def _stale_before(now: datetime.datetime, settings: cp_settings.Settings) -> datetime.datetime:
    # "Stale" is age > fresh, i.e. a heartbeat before now - fresh.
    return now - datetime.timedelta(seconds=settings.placement.heartbeat_fresh)


def _host(r: typing.Mapping[str, typing.Any]) -> domain.Host:
    return domain.Host(
        id=r["id"],
        name=r["name"],
        status=r["status"],
        last_heartbeat=r["last_heartbeat_at"],
        capacity_cpus=float(r["capacity_cpus"]),
        capacity_memory_mb=r["capacity_memory_mb"],
        capacity_disk_bytes=r["capacity_disk_bytes"],
        cordoned=r["cordoned"],
        draining=r["draining"],
        allocated_cpus=float(r["alloc_cpus"]),
        allocated_memory_mb=int(r["alloc_memory_mb"]),
        disk_used_bytes=r["disk_used_bytes"],
        promised_disk_bytes=int(r["promised"]),
        disk_total_bytes=r["disk_total_bytes"],
        labels=_labels(r["labels"]),
    )


def _labels(value: typing.Any) -> dict[str, str]:
    # JSON: a dict through SQLAlchemy, its text through asyncpg (controlplane/db/positional.py).
    if isinstance(value, str):
        return typing.cast("dict[str, str]", orjson.loads(value) or {})
    return value or {}


_ROOM = sa.text(
    """
    SELECT h.name, h.capacity_cpus, h.capacity_memory_mb, a.cpus, a.memory_mb
    FROM host_allocations a JOIN hosts h ON h.id = a.host_id
    WHERE a.host_id = :host
    FOR UPDATE OF a
    """
)


async def room_to_start(session: Session, host_id: uuid.UUID, workspace_id: uuid.UUID, request: Request) -> str | None:
    """None if ``host_id`` has the CPUs and memory to start this (stopped or failed) workspace again; else why not.

    Holds the host's allocation row until commit, so a placement deciding at
    the same time sees this workspace's reservation (the update's trigger adds
    it to that row). A stopped or failed workspace holds no CPUs or memory, so
    the row's sums do not include it.
    """
    row = (await session.execute(_ROOM, {"host": host_id})).first()
    if row is None:
        return "its host is no longer enrolled"
    free_m = round(float(row.capacity_cpus) * 1000) - round(float(row.cpus) * 1000)
    need_m = round(float(request.cpus) * 1000)
    if free_m < need_m:
        return f"host {row.name} lacks cpu: needs {need_m / 1000:g} cpus, {free_m / 1000:g} free of {float(row.capacity_cpus):g}"
    free_mb = row.capacity_memory_mb - int(row.memory_mb)
    if free_mb < request.memory_mb:
        return f"host {row.name} lacks memory: needs {request.memory_mb} MB, {free_mb} MB free of {row.capacity_memory_mb}"
    return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
