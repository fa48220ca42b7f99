"""Base classes and shapes every resource shares: errors, pages, list queries."""

from __future__ import annotations

import functools
import re
import typing
import uuid

import pydantic
import pydantic_core

from controlplane.domain import watch as domain_watch
from controlplane.services import pagination

ItemT = typing.TypeVar("ItemT")

UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID = re.compile(f"^{UUID_PATTERN}$")
_INT = re.compile(r"^-?[0-9]{1,18}$")


# Query values arrive as strings. Parse them exactly as the OpenAPI document
# describes them (pydantic's lax parsing would also take "yes", "1e3" or a
# UUID without dashes, which the contract does not promise).
def _query_bool(value: typing.Any) -> typing.Any:
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("expected true or false")
        return value == "true"
    return value


def _query_int(value: typing.Any) -> typing.Any:
    if isinstance(value, str):
        if not _INT.match(value):
            raise ValueError("expected a whole number")
        return int(value)
    return value


def _query_uuid(value: typing.Any) -> typing.Any:
    if isinstance(value, str) and not _UUID.match(value):
        raise ValueError("expected a UUID like 123e4567-e89b-12d3-a456-426614174000")
    return value


MAX_INDEX = 10**18 - 1


def _query_index(value: typing.Any) -> typing.Any:
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 18:
            raise ValueError("expected the index of the object you have (a whole number, its version; X-A4C-Index)")
        return int(value)
    return value


def _query_duration(value: typing.Any) -> typing.Any:
    return domain_watch.parse_duration(value) if isinstance(value, str) else value


QueryBool = typing.Annotated[bool, pydantic.BeforeValidator(_query_bool)]
# The bound before the validator, so the schema states it as "minimum".
QueryPositiveInt = typing.Annotated[int, pydantic.Field(ge=1), pydantic.BeforeValidator(_query_int)]
QueryUUID = typing.Annotated[uuid.UUID, pydantic.BeforeValidator(_query_uuid)]


# PostgreSQL text cannot hold NUL; free-text fields say so in the contract
# instead of failing at INSERT time.
NO_NUL = r"^[^\x00]*$"
# Identifiers and one-line free text (CI keys, requested_by): no control character at all.
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


def exactly_one(model: pydantic.BaseModel, *fields: str) -> None:
    """Cross-field rule for a model validator; the error names the first field (see endpoint.invalid)."""
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        raise pydantic_core.PydanticCustomError("exactly_one", "give exactly one of {choices}", {"field": fields[0], "choices": " or ".join(fields)})


def one_of_schema(*fields: str) -> dict[str, typing.Any]:
    """JSON Schema for "exactly one of these properties is present"."""
    return {"oneOf": [{"required": [f]} for f in fields]}


def keys_matching(pattern: str) -> dict[str, typing.Any]:
    """JSON Schema for "every key of this object matches": pydantic only emits patternProperties."""
    return {"propertyNames": {"pattern": pattern}}


class Body(pydantic.BaseModel):
    """A request body: unknown fields are errors, and JSON types are not coerced ("5" is not 5)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)


class Query(pydantic.BaseModel):
    """Query parameters: unknown ones are errors; values arrive as strings, so they are parsed."""

    model_config = pydantic.ConfigDict(extra="forbid")


@functools.cache
def repeatable(model: type[pydantic.BaseModel]) -> frozenset[str]:
    """``model``'s query parameters that may be given more than once: those declared as lists (``?status=a&status=b``)."""
    return frozenset(
        name
        for name, field in model.model_fields.items()
        if list in (typing.get_origin(field.annotation), *map(typing.get_origin, typing.get_args(field.annotation)))
    )


class Out(pydantic.BaseModel):
    """A response body: every field is always present (nullable ones as null)."""

    model_config = pydantic.ConfigDict(from_attributes=True, json_schema_serialization_defaults_required=True)


class FieldProblem(Out):
    path: str = pydantic.Field(description="Dotted path of the bad field, e.g. ports.0.container_port, or a header/parameter name.")
    reason: str


class ErrorDetail(Out):
    code: str = pydantic.Field(description="Stable machine-readable code, e.g. invalid, not_found, rate_limited.")
    message: str
    fields: list[FieldProblem] = pydantic.Field(default_factory=list)


class Error(Out):
    """Every error answer (4xx/5xx) has this shape."""

    error: ErrorDetail


class Page(Out, typing.Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = pydantic.Field(description="Pass as ?cursor= for the next page; null on the last page.")


class ListQuery(Query):
    limit: int | None = pydantic.Field(default=None, ge=1, le=10_000, description="Page size (default api.page_size, at most api.max_page_size).")
    cursor: str | None = pydantic.Field(default=None, pattern=pagination.CURSOR_PATTERN, description="next_cursor of the previous page.")

    _limit_is_a_whole_number = pydantic.field_validator("limit", mode="before")(_query_int)


class WatchQuery(Query):
    """A blocking read, in the style of Nomad's blocking queries (controlplane/api/watches.py)."""

    # Frozen: a request without a query string shares one validated instance (controlplane/api/endpoint.py).
    model_config = pydantic.ConfigDict(frozen=True)

    index: typing.Annotated[int, pydantic.Field(ge=0, le=MAX_INDEX), pydantic.BeforeValidator(_query_index)] | None = pydantic.Field(
        default=None,
        description="The index (version, also sent as the X-A4C-Index header) of the object you have. The answer comes as soon as the "
        "object's index is past it; until then the request waits, at most `wait`, and then answers the unchanged object. Without it, "
        "the read answers at once.",
    )
    wait: (
        typing.Annotated[
            float,
            pydantic.BeforeValidator(_query_duration),
            pydantic.WithJsonSchema({"type": "string", "pattern": domain_watch.PATTERN, "maxLength": domain_watch.LONGEST, "examples": ["30s"]}),
        ]
        | None
    ) = pydantic.Field(
        default=None,
        description="Longest the read waits with `index`: 30s, 5m, 1m30s, 250ms or seconds (default watch.default_wait, 60 s; "
        "cut to watch.max_wait, 5 min). Over the watch limits the answer is 429 (per user) or 503 (per instance) with Retry-After.",
    )
