"""What can go wrong in the CLI, and the exit code each failure gives scripts.

Errors::

    CliError                 anything the CLI reports: one message on stderr, never a traceback
    ├── UsageProblem   (2)   a setting is missing or malformed (no server, not a URL, an ambiguous name)
    ├── Failed         (1)   the operation ran and failed: a job or build failed, --wait timed out
    ├── Unreachable    (5)   no answer from the API, or an answer that is not the A4C API's
    └── ApiError             the API answered with its error body; the HTTP status picks the code:
                             401/403 → 4, 404 → 3, 400/413/422 → 6, 5xx → 5, anything else → 1

The codes are a contract (docs/cli.md): scripts branch on them.
"""

from __future__ import annotations

import enum
import typing


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1  # a job or build failed, --wait timed out, a conflict (409)
    USAGE = 2  # click's own code for bad flags; also a missing server or an ambiguous name
    NOT_FOUND = 3
    AUTH = 4  # the token was rejected (401) or lacks the role (403)
    UNREACHABLE = 5  # no answer, or the server failed (5xx): retrying may help
    INVALID = 6  # the API rejected the input (422) and named the fields


class CliError(Exception):
    exit_code: Exit = Exit.FAILED


class UsageProblem(CliError):
    exit_code = Exit.USAGE


class Failed(CliError):
    exit_code = Exit.FAILED


class NotFound(CliError):
    """Raised by name lookups that found nothing (the API's own 404s arrive as ApiError)."""

    exit_code = Exit.NOT_FOUND


class Unreachable(CliError):
    exit_code = Exit.UNREACHABLE


_BY_STATUS = {400: Exit.INVALID, 401: Exit.AUTH, 403: Exit.AUTH, 404: Exit.NOT_FOUND, 413: Exit.INVALID, 422: Exit.INVALID}


def exit_for_status(status: int) -> Exit:
    if status >= 500:
        return Exit.UNREACHABLE
    return _BY_STATUS.get(status, Exit.FAILED)


class ApiError(CliError):
    """The API's ``{"error": {"code", "message", "fields": [{"path", "reason"}]}}``, as one readable message."""

    def __init__(
        self, status: int, code: str, message: str, fields: typing.Sequence[typing.Mapping[str, str]] = (), *, request_id: str | None = None
    ) -> None:
        self.status, self.code, self.message = status, code, message
        # The API's X-Request-Id: every control-plane log line of the request carries it (docs/operations/logging.md).
        self.request_id = request_id
        self.fields = [(str(f.get("path", "")), str(f.get("reason", ""))) for f in fields]
        self.exit_code = exit_for_status(status)
        super().__init__(self.describe())

    def describe(self) -> str:
        if self.status == 401:
            return f"the token was rejected ({self.message}); run a4c login"
        if self.status == 403:
            return f"not allowed: {self.message}"
        if self.status >= 500:
            where = f" (request id {self.request_id})" if self.request_id else ""
            return f"the A4C API failed ({self.status} {self.code}): {self.message}; try again, or see the control plane's log{where}"
        if not self.fields:
            return self.message
        problems = [f"{path or '(request)'}: {reason}" for path, reason in self.fields]
        # The API's message usually is just the fields joined; then one line per field says it all.
        head = "invalid input:" if all(p in self.message for p in problems) else self.message
        return "\n".join([head, *(f"  {p}" for p in problems)])
