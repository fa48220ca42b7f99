"""Build slots: at most ``size`` builds at once, the rest wait first come first served and hear their place in line as it changes."""

from __future__ import annotations

import asyncio

from agent import builds
from agent.domain import builds as domain
from tests.harness import wait


class Line:
    """Builds taking slots; each records the places in line it was told, and can be let go."""

    def __init__(self, slots: builds.Slots) -> None:
        self.slots = slots
        self.told: dict[str, list[int]] = {}
        self.holding: set[str] = set()
        self.done: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    def join(self, name: str) -> None:
        """Start a build and return once it holds a slot or has been told its place in line."""
        self.told[name], self.done[name] = [], asyncio.Event()

        async def build() -> None:
            async with self.slots.hold(self.told[name].append):
                self.holding.add(name)
                try:
                    await self.done[name].wait()
                finally:
                    self.holding.discard(name)

        self.tasks[name] = asyncio.create_task(build())

    async def joined(self, names: str) -> None:
        await wait.eventually(lambda: all(n in self.holding or self.told[n] for n in names), message=f"{names} joined")

    async def held_by(self, names: set[str]) -> None:
        """Wait until exactly ``names`` run holding a slot, and the slots count no one else admitted.

        Admission is counted synchronously when a slot frees (``Slots.holders``), so once the
        running set matches that count nothing further can slip in unseen.
        """
        await wait.eventually(
            lambda: self.holding == names and self.slots.holders == len(names),
            message=f"exactly {sorted(names)} hold a slot (holding {sorted(self.holding)}, slots count {self.slots.holders})",
        )

    async def finish(self, name: str) -> None:
        self.done[name].set()
        await self.tasks[name]


async def test_waiting_builds_hear_their_place_in_line_and_each_move_up():
    line = Line(builds.Slots(1))
    for name in "abcd":
        line.join(name)
        await line.joined(name)
    await line.held_by({"a"})
    assert line.told == {"a": [], "b": [1], "c": [2], "d": [3]}
    await line.finish("a")
    await line.held_by({"b"})
    assert line.told == {"a": [], "b": [1], "c": [2, 1], "d": [3, 2]}
    await line.finish("b")
    await line.held_by({"c"})
    await line.finish("c")
    await line.held_by({"d"})
    assert line.told["d"] == [3, 2, 1]
    await line.finish("d")


async def test_a_build_that_gives_up_waiting_moves_those_behind_it_up():
    line = Line(builds.Slots(1))
    for name in "abc":
        line.join(name)
        await line.joined(name)
    line.tasks["b"].cancel()
    await wait.eventually(lambda: line.tasks["b"].done(), message="b gave up")
    assert line.told["c"] == [2, 1] and line.told["b"] == [1]
    await line.held_by({"a"})
    await line.finish("a")
    await line.held_by({"c"})  # the slot went to the next one still waiting
    await line.finish("c")


async def test_a_larger_size_admits_waiters_at_once_and_a_smaller_one_only_as_holders_finish():
    slots = builds.Slots(1)
    line = Line(slots)
    for name in "abcd":
        line.join(name)
        await line.joined(name)
    slots.resize(3)
    await line.held_by({"a", "b", "c"})
    assert line.told["d"] == [3, 1]
    slots.resize(1)
    await line.finish("a")
    await line.finish("b")
    await line.held_by({"c"})  # still at the new limit: d waits
    await line.finish("c")
    await line.held_by({"d"})
    await line.finish("d")


def test_the_waiting_message_says_the_place_in_line():
    assert domain.waiting_for_slot(2) == "waiting for a build slot, 2nd in line"
