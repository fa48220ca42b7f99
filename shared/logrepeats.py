"""Repeated log lines collapsed: one line per kind per interval, with a count.

During a broker outage aiokafka logs every failed reconnect and metadata
refresh at ERROR, many times a second (about 10,000 lines per control plane
in four minutes). :class:`RepeatFilter`, put on a log handler, lets the first
record of a kind through, drops the repeats for ``interval`` seconds, and
lets the next one through with the count::

    ERROR aiokafka: Unable connect to "127.0.0.1:9092": [Errno 111] … [412 more like this in the last 30 s]

A kind is the logger, the level and the message *template* (``record.msg``,
before its arguments are filled in), so the same failure against different
addresses is one kind. Only the loggers named by ``prefixes`` are limited
(by default aiokafka's), and only from WARNING up: the product's own lines
(and every INFO line, access logs included) pass untouched.
"""

from __future__ import annotations

import logging
import time
import typing

Key = tuple[str, int, str]


class Repeats:
    """The pure bookkeeping: for each kind, when its window opened and how many were dropped since."""

    def __init__(self, interval: float, max_kinds: int = 1000) -> None:
        self.interval = interval
        self.max_kinds = max_kinds
        self._windows: dict[Key, tuple[float, int]] = {}

    def admit(self, key: Key, now: float) -> tuple[int, float] | None:
        """``None``: drop this one. Otherwise let it through: how many were dropped before it, over how many seconds."""
        window = self._windows.get(key)
        if window is not None and now - window[0] < self.interval:
            self._windows[key] = (window[0], window[1] + 1)
            return None
        if window is None and len(self._windows) >= self.max_kinds:
            self._windows.pop(next(iter(self._windows)))  # the oldest kind: memory stays bounded
        self._windows[key] = (now, 0)
        return (0, 0.0) if window is None else (window[1], now - window[0])


class RepeatFilter(logging.Filter):
    def __init__(
        self,
        prefixes: typing.Sequence[str] = ("aiokafka",),
        *,
        interval: float = 30.0,
        level: int = logging.WARNING,
        clock: typing.Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)
        self.level = level
        self.clock = clock
        self.repeats = Repeats(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or not any(record.name == p or record.name.startswith(p + ".") for p in self.prefixes):
            return True
        admitted = self.repeats.admit((record.name, record.levelno, str(record.msg)), self.clock())
        if admitted is None:
            return False
        dropped, seconds = admitted
        if dropped:
            # Appended to the template, so it survives any formatter; no "%" in it.
            record.msg = f"{record.msg} [{dropped} more like this in the last {seconds:.0f} s]"
        return True
