"""Which Kafka offset may be committed when commands finish out of order.

Commands for different workspaces run concurrently, so they finish out of
order; the committed offset of a partition may only move past a command once
every earlier one has finished too, or a crash would skip unfinished work.
The committable offset is the smallest still-pending offset (or one past the
highest started offset when nothing is pending).

A broker restart or rebalance can reset offsets, so the tracker has
generations: work started in an older generation never moves a newer one.
"""

from __future__ import annotations

import dataclasses
import typing

Partition = typing.Hashable


@dataclasses.dataclass
class _PartitionState:
    pending: set[int] = dataclasses.field(default_factory=set)
    highest: int = -1
    committed: int = 0


@dataclasses.dataclass(frozen=True)
class Ticket:
    partition: Partition
    offset: int
    generation: int


class OffsetTracker:
    def __init__(self) -> None:
        self.generation = 0
        self._parts: dict[Partition, _PartitionState] = {}

    def reset(self) -> None:
        """Forget everything (partitions reassigned): older tickets become no-ops."""
        self.generation += 1
        self._parts.clear()

    def started(self, partition: Partition, offset: int) -> Ticket:
        state = self._parts.setdefault(partition, _PartitionState(committed=offset))
        state.pending.add(offset)
        state.highest = max(state.highest, offset)
        return Ticket(partition, offset, self.generation)

    def finished(self, ticket: Ticket) -> int | None:
        """The new committable offset of the ticket's partition, if it moved."""
        if ticket.generation != self.generation:
            return None
        state = self._parts.get(ticket.partition)
        if state is None or ticket.offset not in state.pending:
            return None
        state.pending.discard(ticket.offset)
        target = min(state.pending) if state.pending else state.highest + 1
        if target > state.committed:
            state.committed = target
            return target
        return None

    def in_flight(self) -> int:
        return sum(len(s.pending) for s in self._parts.values())
