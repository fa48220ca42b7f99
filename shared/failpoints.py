"""Fail points: named places where a fault test makes a daemon fail on purpose.

**For fault testing only.** Never set ``A4C_FAILPOINTS`` on a production
host: an armed fail point kills the daemon the first time the code passes it.

After etcd's gofail and FreeBSD's fail(9): the code marks a spot with
``failpoints.hit("relay.after_publish")``; a test arms it for one process
through the environment, so it can land a crash at an exact point (between
publishing to Kafka and marking the outbox rows sent, say) instead of hoping a
``kill -9`` lands there by chance.

Configuration comes **only** from the environment variable ``A4C_FAILPOINTS``,
read once when this module is first imported (never from the config file, so
no deployed config can arm one by accident)::

    A4C_FAILPOINTS="relay.after_publish=exit"
    A4C_FAILPOINTS="relay.after_publish=exit; other.point=raise"

``name=action`` terms separated by ``;`` (blanks around them are ignored).
Names must be in :data:`POINTS`, so a misspelt name is an error rather than a
fail point that silently never fires. Actions:

``exit``   log one CRITICAL line naming the fail point, then ``os._exit``
           with :data:`EXIT_CODE`: the process vanishes as if killed (no
           ``finally`` blocks, no atexit hooks, no clean disconnects), and
           the distinctive status tells a test it died *there*.
``raise``  raise :class:`FailpointTriggered` at that point, so the caller's
           own error handling runs (an in-process test of a failure path).

Unset or empty (the default), :func:`hit` is a no-op: one attribute check on
an empty mapping, cheap enough for any hot path.

Errors::

    FailpointError    A4C_FAILPOINTS is malformed; str() is one line naming
                      the variable (raised at import, so a daemon started
                      with a bad value fails at once rather than running
                      unarmed while the test waits for a crash)
"""

from __future__ import annotations

import logging
import os
import re
import sys
import typing

from shared import config

logger = logging.getLogger(__name__)

ENV_VAR = "A4C_FAILPOINTS"

# Distinctive on purpose: not 1 (a crash), not 2 (a config error, which
# systemd does not restart), not 128+n (a signal).
EXIT_CODE = 86

# Every fail point the code has, with where it is and what arming it simulates.
POINTS: typing.Mapping[str, str] = {
    "relay.after_publish": (
        "controlplane/relay.py: a batch of outbox rows is published to Kafka but not yet marked sent "
        "(its claiming transaction is still open): a control-plane instance dying mid-relay"
    ),
    "agent.before_result": (
        "agent/dispatcher.py: a command's work is done and its job.result is about to be emitted; armed with raise, "
        "the result is never sent: a result event lost on its way"
    ),
}

ACTIONS = ("exit", "raise")

_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


class FailpointError(config.ConfigError, ValueError):
    """``A4C_FAILPOINTS`` is malformed. ``str()`` is one line naming the variable."""


class FailpointTriggered(RuntimeError):
    """Raised where a fail point armed with ``raise`` was hit."""

    def __init__(self, name: str) -> None:
        super().__init__(f"failpoint {name} triggered ({ENV_VAR})")
        self.name = name


def parse(spec: str) -> dict[str, str]:
    """``"a.b=exit; c=raise"`` -> ``{"a.b": "exit", "c": "raise"}``; raises FailpointError.

    Pure, so the grammar is unit-tested without touching the environment.
    """
    armed: dict[str, str] = {}
    for term in spec.split(";"):
        term = term.strip()
        if not term:
            continue
        name, sep, action = (part.strip() for part in term.partition("="))
        if not sep or not name or not action:
            raise _error(spec, f"term {term!r} is not name=action")
        if not _NAME.fullmatch(name):
            raise _error(spec, f"{name!r} is not a fail point name (lower-case words joined by dots)")
        if name not in POINTS:
            raise _error(spec, f"unknown fail point {name!r} (known: {', '.join(sorted(POINTS))})")
        if action not in ACTIONS:
            raise _error(spec, f"unknown action {action!r} for {name} (actions: {', '.join(ACTIONS)})")
        if name in armed:
            raise _error(spec, f"{name} is given twice")
        armed[name] = action
    return armed


def _error(spec: str, problem: str) -> FailpointError:
    return FailpointError(f"{ENV_VAR}={spec!r}: {problem}; expected name=action terms separated by ';' (fault testing only)")


class Failpoints:
    """A set of armed fail points; the module keeps one, built from the environment."""

    def __init__(self, armed: typing.Mapping[str, str] | None = None) -> None:
        self.armed: typing.Mapping[str, str] = dict(armed or {})

    @classmethod
    def from_environ(cls, environ: typing.Mapping[str, str]) -> Failpoints:
        return cls(parse(environ.get(ENV_VAR, "")))

    def hit(self, name: str) -> None:
        """Act on ``name`` if it is armed; otherwise return at once."""
        if not self.armed:
            return
        action = self.armed.get(name)
        if action is None:
            return
        if action == "raise":
            raise FailpointTriggered(name)
        _exit(name)


def _exit(name: str) -> None:
    logger.critical("failpoint %s triggered (%s): exiting with status %d", name, ENV_VAR, EXIT_CODE)
    # os._exit skips every flush: push the line out first, or the log that
    # proves where the process died would be lost with it.
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_CODE)


# Parsed once, at import: the daemon either starts with exactly these armed or
# not at all.
_ACTIVE = Failpoints.from_environ(os.environ)

#: ``failpoints.hit(name)``: act on fail point ``name`` if A4C_FAILPOINTS arms
#: it; by default a no-op (a bound method, so a call site pays one call).
hit = _ACTIVE.hit
