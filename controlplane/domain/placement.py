"""Choose the host for a new workspace (docs/decisions/0003-placement-lock-and-sql-ranking.md): a pure decision.

Errors::

    PlacementInputError    a Request or Host field is out of range (names the field)

Usage::

    result = placement.place(placement.Request(cpus=2, memory_mb=4096, disk_gb=20), hosts, now, settings.placement)
    result.host_id            # None when nothing fits
    result.reason             # one line: why this host / "no eligible host: 3 cordoned, 2 lack memory"
    result.rejected           # per host: Rejection(code, message, detail)
    result.to_record()        # JSON for workspaces.placement / jobs.placement

The caller snapshots the fleet (under its placement lock) into :class:`Host`
values; this module reads no clock and keeps no state, so the same inputs
always give the same answer.

Eligibility, checked in this order; a rejected host records the *first* check
it fails, which is also the first thing an operator would fix:

1. status ``active`` (``down`` and anything else reject), not draining, not cordoned;
2. a heartbeat no older than ``settings.heartbeat_fresh`` (a heartbeat from the
   future, i.e. clock skew, counts as fresh);
3. every required label present with the required value;
4. a disk report exists (without one, "least disk used" cannot be judged);
5. free CPU and free memory (capacity minus the sum already allocated to
   workspaces on the host) cover the request; CPUs are compared in
   millicores so that 0.1 + 0.2 fits in 0.3;
6. free disk covers the request's quota, where *used* is the latest report plus
   the space *promised* to workspaces placed but not yet running (their
   containers do not show in a disk report yet; without this, a burst of
   creates would all land on the host that looked emptiest).

Ranking among eligible hosts: least disk used **as a fraction of the host's
disk, after placing this workspace**: ``(used + promised + request) / total``.
A fraction, not bytes, because hosts differ in size: by absolute bytes a small,
nearly full disk would beat a large half-empty one, and the agents' cleanup
watermarks are fractions too. Counting the request in the fraction makes a
big quota prefer a big disk. The total is the reported disk size, else the
enrolled capacity.

Ties (equal fractions, e.g. a fleet of empty hosts) break on more free memory
after placement, then on the smaller host id (as a string), so the choice does
not depend on the order the hosts came in.

Scope (docs/decisions/0014-placement-examines-the-least-used-hosts.md): a
caller that searches the fleet in order of :func:`fraction_before` may judge
only the hosts up to a bound (``examined_up_to``) past which no host can rank
among the first it shows. The choice and the ranking are then those of the
whole fleet; the counts and the rejected hosts are those of the hosts examined,
and the record says so. With nothing eligible there is no such bound: every
host is judged, so a pending reason always counts the whole fleet.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import typing
import uuid

from controlplane.domain.states import HostStatus

if typing.TYPE_CHECKING:
    from controlplane import settings as cp_settings

GiB = 1024**3
DEFAULT_HEARTBEAT_FRESH = datetime.timedelta(seconds=60)


class PlacementInputError(ValueError):
    """A field of a Request or Host is out of range; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Code(str, enum.Enum):
    """Why a host was not eligible (machine-usable; the message is for people)."""

    DOWN = "down"
    DRAINING = "draining"
    NOT_ACTIVE = "not_active"
    CORDONED = "cordoned"
    NO_HEARTBEAT = "no_heartbeat"
    STALE_HEARTBEAT = "stale_heartbeat"
    MISSING_LABEL = "missing_label"
    NO_DISK_REPORT = "no_disk_report"
    INSUFFICIENT_CPU = "insufficient_cpu"
    INSUFFICIENT_MEMORY = "insufficient_memory"
    INSUFFICIENT_DISK = "insufficient_disk"


# How each code reads in the one-line summary: (one host, several hosts).
_SUMMARY: dict[Code, tuple[str, str]] = {
    Code.DOWN: ("down", "down"),
    Code.DRAINING: ("draining", "draining"),
    Code.NOT_ACTIVE: ("not active", "not active"),
    Code.CORDONED: ("cordoned", "cordoned"),
    Code.NO_HEARTBEAT: ("never sent a heartbeat", "never sent a heartbeat"),
    Code.STALE_HEARTBEAT: ("has a stale heartbeat", "have a stale heartbeat"),
    Code.MISSING_LABEL: ("lacks a required label", "lack a required label"),
    Code.NO_DISK_REPORT: ("has no disk report", "have no disk report"),
    Code.INSUFFICIENT_CPU: ("lacks cpu", "lack cpu"),
    Code.INSUFFICIENT_MEMORY: ("lacks memory", "lack memory"),
    Code.INSUFFICIENT_DISK: ("lacks disk space", "lack disk space"),
}


@dataclasses.dataclass(frozen=True)
class Request:
    """What the new workspace needs. ``labels``: every key must be on the host with this value."""

    cpus: float
    memory_mb: int
    disk_gb: int = 0
    labels: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not float(self.cpus) > 0:
            raise PlacementInputError("cpus", f"must be > 0, got {self.cpus}")
        if self.memory_mb <= 0:
            raise PlacementInputError("memory_mb", f"must be > 0, got {self.memory_mb}")
        if self.disk_gb < 0:
            raise PlacementInputError("disk_gb", f"must be >= 0, got {self.disk_gb}")


@dataclasses.dataclass(frozen=True)
class Host:
    """One candidate host as the control plane knows it at decision time.

    ``allocated_*`` are sums over the live workspaces placed on the host
    (a workspace asked to stop holds none: controlplane/services/placement.py).
    ``disk_used_bytes`` is the latest report (None: no report yet);
    ``promised_disk_bytes`` the quotas of workspaces placed but not yet running.
    ``disk_total_bytes`` is the reported disk size (None: use ``capacity_disk_bytes``).
    """

    id: str | uuid.UUID
    name: str
    status: str
    last_heartbeat: datetime.datetime | None
    capacity_cpus: float
    capacity_memory_mb: int
    capacity_disk_bytes: int
    cordoned: bool = False
    draining: bool = False
    allocated_cpus: float = 0.0
    allocated_memory_mb: int = 0
    disk_used_bytes: int | None = None
    promised_disk_bytes: int = 0
    disk_total_bytes: int | None = None
    labels: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.last_heartbeat is not None and self.last_heartbeat.tzinfo is None:
            raise PlacementInputError("last_heartbeat", "must be timezone-aware")
        for name in ("capacity_disk_bytes", "promised_disk_bytes", "allocated_memory_mb"):
            if getattr(self, name) < 0:
                raise PlacementInputError(name, f"must be >= 0, got {getattr(self, name)}")

    @property
    def disk_total(self) -> int:
        return self.disk_total_bytes if self.disk_total_bytes else self.capacity_disk_bytes


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Why one host was not eligible. ``detail`` holds the numbers behind the message."""

    host_id: str | uuid.UUID
    host_name: str
    code: Code
    message: str
    detail: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Score:
    """An eligible host's standing, after placing the request on it."""

    host_id: str | uuid.UUID
    host_name: str
    disk_fraction: float
    free_memory_mb: int
    free_cpus: float


@dataclasses.dataclass(frozen=True)
class Placement:
    """The decision. ``host`` is None when nothing fits; ``reason`` is then the pending job's reason."""

    host: Host | None
    reason: str
    eligible: tuple[Score, ...]
    rejected: tuple[Rejection, ...]
    # None: every host given was judged; else only those whose fraction_before is at most this.
    examined_up_to: float | None = None

    @property
    def host_id(self) -> str | uuid.UUID | None:
        return None if self.host is None else self.host.id

    @property
    def host_name(self) -> str | None:
        return None if self.host is None else self.host.name

    def rejection_counts(self) -> dict[Code, int]:
        counts: dict[Code, int] = {}
        for rejection in self.rejected:
            counts[rejection.code] = counts.get(rejection.code, 0) + 1
        return counts

    def to_record(self, *, limit: int | None = 20) -> dict[str, typing.Any]:
        """A JSON-ready account of the decision, stored with the workspace and its job.

        ``eligible_count`` and ``rejected_counts`` cover every host examined
        (``examined``: how many, and whether that is the whole fleet); the
        ``eligible`` ranking and the ``rejected`` list keep their first
        ``limit`` entries (None: all), so a fleet of thousands does not put a
        thousand-entry record on every row.
        """
        eligible = self.eligible if limit is None else self.eligible[:limit]
        rejected = self.rejected if limit is None else self.rejected[:limit]
        return {
            "host_id": None if self.host is None else str(self.host.id),
            "host_name": self.host_name,
            "reason": self.reason,
            "eligible_count": len(self.eligible),
            "rejected_counts": {code.value: n for code, n in self.rejection_counts().items()},
            "examined": {
                "hosts": len(self.eligible) + len(self.rejected),
                "whole_fleet": self.examined_up_to is None,
                "disk_fraction_before_max": self.examined_up_to,
            },
            "eligible": [
                {
                    "host_id": str(s.host_id),
                    "host_name": s.host_name,
                    "disk_fraction": round(s.disk_fraction, 6),
                    "free_memory_mb": s.free_memory_mb,
                    "free_cpus": s.free_cpus,
                }
                for s in eligible
            ],
            "rejected": [
                {"host_id": str(r.host_id), "host_name": r.host_name, "code": r.code.value, "message": r.message, "detail": dict(r.detail)}
                for r in rejected
            ],
        }


def place(
    request: Request,
    hosts: typing.Iterable[Host],
    now: datetime.datetime,
    settings: cp_settings.PlacementSettings | None = None,
    *,
    examined_up_to: float | None = None,
) -> Placement:
    """The best host for ``request`` among ``hosts`` at ``now``, and why (see the module docstring).

    ``examined_up_to``: judge only the hosts whose :func:`fraction_before` is at
    most this (see "Scope" above); the caller guarantees one of them is eligible.
    """
    if now.tzinfo is None:
        raise PlacementInputError("now", "must be timezone-aware")
    fresh = DEFAULT_HEARTBEAT_FRESH if settings is None else datetime.timedelta(seconds=settings.heartbeat_fresh)
    if examined_up_to is not None:
        hosts = [h for h in hosts if (f := fraction_before(h)) is not None and f <= examined_up_to]
    ordered = sorted(hosts, key=lambda h: (h.name, str(h.id)))
    need = _Need(request)
    rejected: list[Rejection] = []
    eligible: list[tuple[Score, Host]] = []
    for host in ordered:
        verdict = _judge(need, host, now, fresh)
        if isinstance(verdict, Score):
            eligible.append((verdict, host))
        else:
            rejected.append(verdict)
    eligible.sort(key=lambda pair: _rank(pair[0]))
    scores = tuple(score for score, _ in eligible)
    if not eligible:
        return Placement(None, _summary(len(ordered), rejected), scores, tuple(rejected), examined_up_to)
    examined = None if examined_up_to is None else len(ordered)
    return Placement(eligible[0][1], why(scores, len(scores), examined=examined), scores, tuple(rejected), examined_up_to)


def fraction_before(host: Host) -> float | None:
    """Disk used and promised over the host's disk, before this request (None: no disk report, or no disk).

    Never above an eligible host's ranking fraction ``(used + promised + request) / total``
    (both are divisions of integers by the same total, and rounding keeps their order),
    so a search in this order can stop at the first host whose fraction before
    exceeds the last fraction it must show: no later host can rank above it.
    """
    total = host.disk_total
    if host.disk_used_bytes is None or total <= 0:
        return None
    return float(host.disk_used_bytes + host.promised_disk_bytes) / float(total)


def _rank(score: Score) -> tuple[float, int, str]:
    return (score.disk_fraction, -score.free_memory_mb, str(score.host_id))


class _Need:
    """The request in the units the checks compare (computed once, not once per host)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.milli_cpus = _milli(request.cpus)
        self.disk_bytes = request.disk_gb * GiB
        self.labels = sorted(request.labels.items())


def _judge(need: _Need, host: Host, now: datetime.datetime, fresh: datetime.timedelta) -> Rejection | Score:
    """The host's Score if it can take the request, else the first check it fails."""

    def reject(code: Code, message: str, **detail: typing.Any) -> Rejection:
        return Rejection(host.id, host.name, code, message, detail)

    request = need.request

    if host.status == HostStatus.DOWN:
        return reject(Code.DOWN, "host is down")
    if host.status == "draining" or host.draining:
        return reject(Code.DRAINING, "host is draining")
    if host.status != HostStatus.ACTIVE:
        return reject(Code.NOT_ACTIVE, f"host status is {host.status!r}, not active", status=host.status)
    if host.cordoned:
        return reject(Code.CORDONED, "host is cordoned")
    if host.last_heartbeat is None:
        return reject(Code.NO_HEARTBEAT, "no heartbeat received yet")
    age = now - host.last_heartbeat
    if age > fresh:
        return reject(
            Code.STALE_HEARTBEAT,
            f"last heartbeat {_duration(age)} ago (fresh within {_duration(fresh)})",
            age_s=age.total_seconds(),
            limit_s=fresh.total_seconds(),
        )
    for key, wanted in need.labels:
        have = host.labels.get(key)
        if have is None or str(have) != str(wanted):
            has = "none" if have is None else f"{key}={have}"
            return reject(Code.MISSING_LABEL, f"needs label {key}={wanted}, host has {has}", label=key, wanted=wanted, have=have)
    if host.disk_used_bytes is None:
        return reject(Code.NO_DISK_REPORT, "no disk usage report yet")

    need_m, capacity_m = need.milli_cpus, _milli(host.capacity_cpus)
    free_m = capacity_m - _milli(host.allocated_cpus)
    if free_m < need_m:
        return reject(
            Code.INSUFFICIENT_CPU,
            f"needs {_cpus(need_m)} cpus, {_cpus(free_m)} free of {_cpus(capacity_m)}",
            need=need_m / 1000,
            free=free_m / 1000,
        )
    free_mb = host.capacity_memory_mb - host.allocated_memory_mb
    if free_mb < request.memory_mb:
        return reject(
            Code.INSUFFICIENT_MEMORY,
            f"needs {request.memory_mb} MB memory, {free_mb} MB free of {host.capacity_memory_mb}",
            need=request.memory_mb,
            free=free_mb,
        )
    need_b, total_b = need.disk_bytes, host.disk_total
    free_b = total_b - host.disk_used_bytes - host.promised_disk_bytes
    if total_b <= 0 or free_b < need_b:
        return reject(
            Code.INSUFFICIENT_DISK,
            f"needs {request.disk_gb} GiB disk, {_gib(max(free_b, 0))} GiB free of {_gib(total_b)} GiB"
            f" ({_gib(host.promised_disk_bytes)} GiB of it promised to workspaces being created)",
            need=need_b,
            free=free_b,
        )
    return Score(
        host_id=host.id,
        host_name=host.name,
        disk_fraction=(total_b - free_b + need_b) / total_b,
        free_memory_mb=free_mb - request.memory_mb,
        free_cpus=(free_m - need_m) / 1000,
    )


def why(scores: typing.Sequence[Score], eligible_count: int, *, examined: int | None = None) -> str:
    """The reason for choosing ``scores[0]``, ranked first of ``eligible_count`` eligible hosts.

    ``examined``: how many hosts were judged when that was not the whole fleet
    (see "Scope" above). Public for callers that rank in SQL and pass only the
    top of the ranking to :func:`place` (see controlplane.services.placement):
    they know the counts.
    """
    best = scores[0]
    n = eligible_count
    text = f"{best.host_name}: least disk used of {n} eligible host{'s' if n != 1 else ''}"
    if examined is None:
        text += f" ({best.disk_fraction:.1%} after placement)"
    else:
        text += f" among {examined} examined ({best.disk_fraction:.1%} after placement; the hosts not examined were fuller)"
    if n > 1 and scores[1].disk_fraction == best.disk_fraction:
        other = scores[1]
        if other.free_memory_mb != best.free_memory_mb:
            text += f"; tied on disk with {other.host_name}, more free memory ({best.free_memory_mb} MB)"
        else:
            text += f"; tied on disk and memory with {other.host_name}, smaller host id"
    return text


def _summary(total: int, rejected: list[Rejection]) -> str:
    counts: dict[Code, int] = {}
    for rejection in rejected:
        counts[rejection.code] = counts.get(rejection.code, 0) + 1
    return summary(total, counts)


def summary(total: int, counts: typing.Mapping[Code, int]) -> str:
    """The pending reason from rejection counts over ``total`` hosts (public for callers that count in SQL)."""
    if total == 0:
        return "no eligible host: no hosts are enrolled"
    order = list(Code)
    parts = [f"{count} {_SUMMARY[code][count != 1]}" for code, count in sorted(counts.items(), key=lambda item: (-item[1], order.index(item[0])))]
    return "no eligible host: " + ", ".join(parts)


def _milli(cpus: typing.Any) -> int:
    # Decimal (from NUMERIC columns) and float both convert exactly enough at 1/1000.
    return round(float(cpus) * 1000)


def _cpus(milli: int) -> str:
    return f"{milli / 1000:g}"


def _gib(n: int) -> str:
    return f"{n / GiB:.1f}".removesuffix(".0")


def _duration(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
