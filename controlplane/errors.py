"""The control plane's domain errors: what services raise and the API renders.

Errors::

    DomainError            base: code, message, fields
    ├── Invalid            422  bad input; ``fields`` name each bad path and why
    ├── Malformed          400  the body is not JSON at all
    ├── Unauthorized       401  no token, or one that is unknown/revoked/expired
    ├── Forbidden          403  a valid token whose role may not do this
    ├── NotFound           404  absent, or somebody else's (never tell which)
    ├── RequestTimeout     408  the body did not arrive within http.body_timeout
    ├── Conflict           409  the request collides with current state
    ├── TooLarge           413  the body is larger than http.max_body_bytes
    ├── UnsupportedMediaType 415  a JSON body sent without Content-Type: application/json
    ├── RateLimited        429  the caller's token bucket is empty; retry_after s
    └── Unavailable        503  a dependency (the database) cannot be reached
        └── Overloaded     503  this route class is at its concurrency cap; retry_after s

Services raise these and nothing else for expected failures; third-party
exceptions (SQLAlchemy, pydantic, cron parsing) are translated where they enter.
The HTTP error middleware maps each class to its status (``STATUS``) and renders
``{"error": {"code", "message", "fields": [{"path", "reason"}]}}``.
"""

from __future__ import annotations

import dataclasses
import typing


@dataclasses.dataclass(frozen=True)
class FieldError:
    path: str
    reason: str


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, fields: typing.Sequence[FieldError] = (), code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = list(fields)
        if code is not None:
            self.code = code


class Invalid(DomainError):
    code = "invalid"

    @classmethod
    def field(cls, path: str, reason: str) -> Invalid:
        """One bad field: the message repeats it so a human reading only the message knows."""
        return cls(f"{path}: {reason}", fields=[FieldError(path, reason)])


class Malformed(DomainError):
    code = "malformed"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class RequestTimeout(DomainError):
    code = "timeout"


class TooLarge(DomainError):
    code = "too_large"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class Unavailable(DomainError):
    code = "unavailable"


class Overloaded(Unavailable):
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


STATUS: dict[type[DomainError], int] = {
    Malformed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    RequestTimeout: 408,
    TooLarge: 413,
    UnsupportedMediaType: 415,
    Invalid: 422,
    RateLimited: 429,
    Unavailable: 503,
}


def status_of(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
