"""Comparing the jobs table with the index: per-bucket statistics, then per-job repairs.

A bucket is one UTC day of ``created_at``. For the live jobs in it (not
deleted) each side reports the count, the sum and the maximum of the
versions. Any difference means the bucket drifted: a missing or extra job
changes the count, a stale version the sum (and usually the maximum).

Repairing a drifted bucket reads both sides' (id, version, deleted) for that
day in job-id order (pages of ids, never documents) and decides per job:

* the index lacks it, or holds an older version or the wrong deleted flag at
  an older version -> index the row (its version wins by external versioning);
* the index holds a live job the table does not have (a purge whose tombstone
  never arrived) -> a tombstone one version above the indexed one;
* the index is *ahead* of the table (a restored database) -> reported, never
  silently rewritten: external versions cannot go back.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing


@dataclasses.dataclass(frozen=True)
class Stats:
    count: int
    version_sum: int
    version_max: int


@dataclasses.dataclass(frozen=True)
class Drift:
    bucket: datetime.datetime
    table: Stats | None
    index: Stats | None

    def describe(self) -> str:
        def show(s: Stats | None) -> str:
            return "none" if s is None else f"{s.count} jobs, version sum {s.version_sum}, max {s.version_max}"

        return f"{self.bucket.date().isoformat()}: table {show(self.table)}; index {show(self.index)}"


def compare(table: typing.Mapping[datetime.datetime, Stats], index: typing.Mapping[datetime.datetime, Stats]) -> list[Drift]:
    """Buckets whose statistics differ, oldest first (a bucket with no live jobs is absent, not zero)."""
    drifted = []
    for bucket in sorted(set(table) | set(index)):
        mine, theirs = table.get(bucket), index.get(bucket)
        if mine != theirs:
            drifted.append(Drift(bucket, mine, theirs))
    return drifted


@dataclasses.dataclass(frozen=True)
class Entry:
    """One job as a side knows it."""

    id: str
    version: int
    deleted: bool


@dataclasses.dataclass
class Plan:
    reindex: list[str] = dataclasses.field(default_factory=list)
    tombstone: list[Entry] = dataclasses.field(default_factory=list)
    ahead: list[str] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.reindex or self.tombstone or self.ahead)


def plan(table: typing.Iterable[Entry], index: typing.Iterable[Entry]) -> Plan:
    """Merge two id-ordered streams into repairs."""
    out = Plan()
    rows, docs = iter(table), iter(index)
    row, doc = next(rows, None), next(docs, None)
    while row is not None or doc is not None:
        if row is not None and (doc is None or row.id < doc.id):
            out.reindex.append(row.id)
            row = next(rows, None)
        elif doc is not None and (row is None or doc.id < row.id):
            if not doc.deleted:
                out.tombstone.append(doc)
            doc = next(docs, None)
        elif doc is not None and row is not None:
            if doc.version < row.version:
                out.reindex.append(row.id)
            elif doc.version > row.version:
                out.ahead.append(row.id)
            elif doc.deleted != row.deleted:
                out.ahead.append(row.id)  # same version, different state: nothing safe to do automatically
            row, doc = next(rows, None), next(docs, None)
    return out
