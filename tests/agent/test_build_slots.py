"""Build slots: at most ``size`` builds at once, the rest wait first come first served and hear their place in line as it changes."""

from __future__ import annotations

import asyncio

from agent import builds
from agent.domain import builds as domain


class Line:
    """Builds taking slots; each records the places in line it was told, and can be let go."""

    def __init__(self, slots: builds.Slots) -> None:
        self.slots = slots
        self.told: dict[str, list[int]] = {}
        self.holding: set[str] = set()
        self.done: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    def join(self, name: str) -> None:
        self.told[name], self.done[name] = [], asyncio.Event()

        async def build() -> None:
            async with self.slots.hold(self.told[name].append):
                self.holding.add(name)
                try:
                    await self.done[name].wait()
                finally:
                    self.holding.discard(name)

        self.tasks[name] = asyncio.create_task(build())

    async def settle(self) -> None:
        for _ in range(5):  # let woken tasks run up to their next wait
            await asyncio.sleep(0)

    async def finish(self, name: str) -> None:
        self.done[name].set()
        await self.tasks[name]
        await self.settle()


async def test_waiting_builds_hear_their_place_in_line_and_each_move_up():
    line = Line(builds.Slots(1))
    for name in "abcd":
        line.join(name)
    await line.settle()
    assert line.holding == {"a"} and line.told == {"a": [], "b": [1], "c": [2], "d": [3]}
    await line.finish("a")
    assert line.holding == {"b"} and line.told == {"a": [], "b": [1], "c": [2, 1], "d": [3, 2]}
    await line.finish("b")
    await line.finish("c")
    assert line.holding == {"d"} and line.told["d"] == [3, 2, 1]
    await line.finish("d")


async def test_a_build_that_gives_up_waiting_moves_those_behind_it_up():
    line = Line(builds.Slots(1))
    for name in "abc":
        line.join(name)
    await line.settle()
    line.tasks["b"].cancel()
    await line.settle()
    assert line.told["c"] == [2, 1] and line.told["b"] == [1] and line.holding == {"a"}
    await line.finish("a")
    assert line.holding == {"c"}, "the slot went to the next one still waiting"
    await line.finish("c")


async def test_a_larger_size_admits_waiters_at_once_and_a_smaller_one_only_as_holders_finish():
    slots = builds.Slots(1)
    line = Line(slots)
    for name in "abcd":
        line.join(name)
    await line.settle()
    slots.resize(3)
    await line.settle()
    assert line.holding == {"a", "b", "c"} and line.told["d"] == [3, 1]
    slots.resize(1)
    await line.finish("a")
    await line.finish("b")
    assert line.holding == {"c"}, "still at the new limit: d waits"
    await line.finish("c")
    assert line.holding == {"d"}
    await line.finish("d")


def test_the_waiting_message_says_the_place_in_line():
    assert domain.waiting_for_slot(2) == "waiting for a build slot, 2nd in line"
