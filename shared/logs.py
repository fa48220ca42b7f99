"""The one log schema of both daemons: ECS JSON lines, and the context that ties one job's lines together.

Every line the control plane (API, relay, consumers, workers, sync worker)
and the agent write in ``json`` format is one ECS object on stderr (journald
keeps it as is; shared/log_schema.json is its JSON Schema,
docs/operations/logging.md shows how to ship it)::

    {"@timestamp": "2026-12-04T21:40:02.123Z", "log.level": "info", "message": "command done",
     "ecs.version": "8.11.0", "log": {"logger": "agent.dispatcher"},
     "service": {"name": "a4c-agent"}, "host": {"name": "node-07"}, "process": {"pid": 812},
     "a4c": {"job_id": "…", "workspace_id": "…", "request_id": "…", "ok": true}}

The layout is the ecs-logging spec's, which Elastic's own loggers follow:
``log.level`` and ``ecs.version`` are dotted keys at the top so a person
reading the raw line sees time, level and message first; everything else is
nested objects, which Elasticsearch maps the same as dotted keys. Fields of
our own live under ``a4c`` (ECS's advice for custom fields), so an ``extra``
named like an ECS field (``error``, ``host``) cannot collide with ECS's type
for it.

Context. :func:`scope` binds fields (a job, a workspace, an HTTP request id)
for the code running inside it, and tasks it starts, via :mod:`contextvars`;
:func:`note` adds to the innermost scope (the API's request scope learns its
job id when the command is written). Fields given with ``extra={...}`` win
over the scope's. Values whose key names a secret are never written.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import itertools
import json
import logging
import os
import re
import secrets
import socket
import sys
import traceback
import typing

from shared import settings as common

ECS_VERSION = "8.11.0"
# The fields that follow one operation across the daemons (docs/operations/logging.md).
JOB_ID, WORKSPACE_ID, REQUEST_ID = "job_id", "workspace_id", "request_id"
# Extra attributes holding whole ECS objects (``http``, ``url``, ``event``) rather than a4c fields.
ECS_EXTRA = "ecs"

REQUEST_ID_HEADER = "X-Request-Id"
# What a request id from outside may look like: printable, no spaces, bounded
# (it is logged and carried in signed messages, so nothing that could forge a line).
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:@+=/-]{8,128}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)

# Keys whose values are secrets (tokens, passwords, signing keys): written as "[redacted]".
_SECRET = re.compile(r"(token|password|passwd|secret|signing_key|api_key|authorization|credential)s?$|^key$", re.IGNORECASE)
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

_context: contextvars.ContextVar[dict[str, typing.Any] | None] = contextvars.ContextVar("a4c_log_context", default=None)


# --- request ids ---------------------------------------------------------------


class _RequestIds:
    """32 hex digits, like a uuid4's: 64 random bits drawn once per process, then a counter.

    Unique across instances and restarts as long as no two processes draw the same 64 bits (a new draw on
    every start and in a forked child), and it costs no getrandom() per request: uuid4 was a visible share
    of a hot read's CPU (docs/benchmarks.md, ``api_read``)."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


new_request_id = _RequestIds()
os.register_at_fork(after_in_child=new_request_id.reseed)


def valid_request_id(value: str | None) -> bool:
    return value is not None and _REQUEST_ID.fullmatch(value) is not None


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-Id`` when well-formed, else a fresh one."""
    return header if header is not None and valid_request_id(header) else new_request_id()


# --- context -------------------------------------------------------------------


@contextlib.contextmanager
def scope(**fields: typing.Any) -> typing.Iterator[dict[str, typing.Any]]:
    """Bind ``fields`` (None values are left out) to every line logged inside, and in tasks started inside."""
    token = bind(**fields)
    try:
        yield typing.cast(dict[str, typing.Any], _context.get())
    finally:
        _context.reset(token)


def bind(**fields: typing.Any) -> contextvars.Token[dict[str, typing.Any] | None]:
    """:func:`scope` without the context manager, for a per-request path (controlplane/api/middleware.py):
    the scope lasts until ``unbind(token)``, which the caller must reach (a ``finally``)."""
    outer = _context.get()
    inner = dict(outer) if outer else {}
    for key, value in fields.items():
        if value is not None:
            inner[key] = value
    return _context.set(inner)


def unbind(token: contextvars.Token[dict[str, typing.Any] | None]) -> None:
    _context.reset(token)


def note(**fields: typing.Any) -> None:
    """Add fields to the innermost :func:`scope`; outside one this does nothing (a loop must not keep an old job's id)."""
    current = _context.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def current() -> dict[str, typing.Any]:
    return dict(_context.get() or {})


def request_id() -> str | None:
    found = (_context.get() or {}).get(REQUEST_ID)
    return found if isinstance(found, str) else None


# --- formatting ----------------------------------------------------------------


def _redact(key: str, value: typing.Any) -> typing.Any:
    if _SECRET.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    return value


def fields_of(record: logging.LogRecord) -> dict[str, typing.Any]:
    """The record's a4c fields: the scope's, then its ``extra`` ones (None means absent, as in ECS), secrets redacted."""
    out = dict(_context.get() or {})
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_") and key != ECS_EXTRA:
            out[key] = value
    return {k: _redact(k, v) for k, v in out.items() if v is not None}


class EcsFormatter(logging.Formatter):
    """One ECS JSON object per record, on one line."""

    def __init__(self, service: str, host_name: str | None = None) -> None:
        super().__init__()
        self.service = service
        self.host_name = host_name or socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        out: dict[str, typing.Any] = {
            "@timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "log.level": record.levelname.lower(),
            "message": record.getMessage(),
            "ecs.version": ECS_VERSION,
            "log": {"logger": record.name},
            "service": {"name": self.service},
            "host": {"name": self.host_name},
            "process": {"pid": record.process or os.getpid()},
        }
        extra = getattr(record, ECS_EXTRA, None)
        if isinstance(extra, dict):
            for key, value in extra.items():
                if key not in out:
                    out[key] = value
        fields = fields_of(record)
        if fields:
            out["a4c"] = fields
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error"] = {
                "type": type(exc).__name__,
                "message": str(exc),
                "stack_trace": "".join(traceback.format_exception(*record.exc_info)),
            }
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a terminal: the classic line, then the a4c fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = fields_of(record)
        return base + ("" if not fields else " " + " ".join(f"{k}={v}" for k, v in fields.items()))


def setup(
    settings: common.LoggingSettings, *, service: str, host_name: str | None = None, filters: typing.Sequence[logging.Filter] = ()
) -> logging.Handler:
    """Route every logger to one stderr handler in the configured format; returns the handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EcsFormatter(service, host_name) if settings.format == "json" else TextFormatter())
    for f in filters:
        handler.addFilter(f)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Python's warnings would otherwise print bare text between the JSON lines. Off, then on:
    # captureWarnings(True) does nothing while logging believes it captures already, even after
    # someone put warnings.showwarning back (warnings.catch_warnings does on exit).
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    return handler
