"""``a4c up`` keeps its children running: a crashed child is restarted with backoff; only repeated crashes stop the whole.

The decision is the pure function :func:`decide` (table-tested in
tests/cli/test_supervision_decisions.py); :class:`Watcher` is the thin loop
around it that ``a4c/up.py`` runs once everything has started:

* a child that exits while nobody asked it to is restarted with the same
  arguments (so the same ports and state directory: the agent keeps its
  identity, PostgreSQL its data) after 0.5 s, doubling per recent crash up
  to 30 s; one line per restart goes to the terminal and to
  ``<state>/logs/up.log``, e.g.
  ``agent exited with signal 9 (SIGKILL); restarting in 0.5 s (restart 1)``;
* the other children are not touched: the API stays up while the agent
  restarts;
* the 5th crash of one child within 2 minutes gives up: the caller stops
  everything and exits 1 with the message (which child, how often, its log).

``<state>/run/children.json`` says, for each child, its pid and how often it
was restarted.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import signal
import time
import typing

import click

from a4c import embedded
from shared.domain import backoff


@dataclasses.dataclass(frozen=True)
class Policy:
    first_delay: float = 0.5
    max_delay: float = 30.0
    give_up_after: int = 5  # crashes of one child …
    within: float = 120.0  # … within this many seconds


@dataclasses.dataclass(frozen=True)
class Restart:
    delay: float


@dataclasses.dataclass(frozen=True)
class GiveUp:
    crashes: int
    within: float


def decide(exits: typing.Sequence[float], now: float, policy: Policy = Policy()) -> Restart | GiveUp:
    """A child has just exited; ``exits`` are the times of its exits so far, this one included."""
    recent = [t for t in exits if now - t <= policy.within]
    if len(recent) >= policy.give_up_after:
        return GiveUp(len(recent), policy.within)
    # No jitter: one local child retries alone, and the terminal shows the delay.
    exact = backoff.Policy(policy.first_delay, policy.max_delay, jitter=0.0)
    return Restart(exact.delay(len(recent) - 1, 0.0))


def describe_exit(returncode: int | None) -> str:
    """How a process ended, as people say it: ``exited with code 1``, ``exited with signal 9 (SIGKILL)``."""
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            name = ""
        return f"exited with signal {-returncode}{name}"
    return f"exited with code {returncode}"


@dataclasses.dataclass
class _Record:
    exits: list[float] = dataclasses.field(default_factory=list)
    restarts: int = 0
    due: float | None = None  # a restart is scheduled for this time
    last_exit: str = ""


class GaveUp(Exception):
    """A child kept crashing; the message says which, how often, and where its log is."""


class Watcher:
    """Polls the children; restarts crashed ones when due; raises :class:`GaveUp` when the policy says so."""

    def __init__(self, children: list[embedded.Child], state: pathlib.Path, policy: Policy = Policy()) -> None:
        self.children = children
        self.policy = policy
        self.records = {child.name: _Record() for child in children}
        self.log = state / "logs" / "up.log"
        self.status = state / "run" / "children.json"
        self._write_status()

    def run(self, stopping: typing.Callable[[], bool], interval: float = 0.2) -> None:
        while not stopping():
            self.step(time.monotonic())
            time.sleep(interval)

    def step(self, now: float) -> None:
        for child in self.children:
            record = self.records[child.name]
            if record.due is not None:
                if now >= record.due:
                    self._restart(child, record, now)
                continue
            if child.alive():
                continue
            record.exits.append(now)
            record.last_exit = describe_exit(child.process.returncode if child.process else None)
            self._decide(child, record, now)

    def restarts(self) -> dict[str, int]:
        return {name: record.restarts for name, record in self.records.items() if record.restarts}

    def _decide(self, child: embedded.Child, record: _Record, now: float) -> None:
        decision = decide(record.exits, now, self.policy)
        if isinstance(decision, GiveUp):
            line = f"{child.name} {record.last_exit}: {decision.crashes} crashes within {decision.within:g} s; giving up"
            self._note(line)
            raise GaveUp(f"{line} and stopping everything; its log ({child.log}) ends:\n{child.tail()}")
        record.due = now + decision.delay
        self._note(f"{child.name} {record.last_exit}; restarting in {decision.delay:.1f} s (restart {record.restarts + 1})")

    def _restart(self, child: embedded.Child, record: _Record, now: float) -> None:
        record.due = None
        record.restarts += 1
        try:
            with open(child.log, "a") as log:  # where one run of the child ends in its log
                log.write(f"--- a4c up: {child.name} {record.last_exit}; restart {record.restarts} ---\n")
            child.start()
        except (OSError, embedded.EmbeddedError) as exc:
            # Could not even start: as good as a crash at once.
            record.exits.append(now)
            record.last_exit = f"could not start ({exc})"
            self._decide(child, record, now)
        self._write_status()

    def _note(self, line: str) -> None:
        click.echo(line, err=True)
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as out:
                out.write(f"{stamp} {line}\n")
        except OSError:
            pass

    def _write_status(self) -> None:
        status = {
            child.name: {
                "pid": child.process.pid if child.process else None,
                "restarts": self.records[child.name].restarts,
                "last_exit": self.records[child.name].last_exit,
            }
            for child in self.children
        }
        try:
            self.status.parent.mkdir(parents=True, exist_ok=True)
            self.status.write_text(json.dumps(status, indent=2))
        except OSError:
            pass
