"""Cursors of job search pages: base64url JSON of the last row's sort values, the sort and a checksum. Pure.

The checksum is not a secret: a cursor is only a position and grants
nothing. It exists so that an edited or truncated cursor is a clear error
(:class:`~controlplane.search.domain.query.CursorError`) instead of a page
from nowhere.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import typing

from controlplane.search.domain.query import CursorError, Sort

CursorValue = str | int | float | bool | None | datetime.datetime


def encode(values: typing.Sequence[CursorValue], *, sort: Sort | None = None) -> str:
    """An opaque cursor for ``values`` (the last row's sort value(s), then its job id)."""
    body: dict[str, typing.Any] = {"v": 1, "k": [_cursor_value(v) for v in values]}
    if sort is not None:
        body["s"] = str(sort)
    body["c"] = _checksum(body)
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str, *, sort: Sort | None = None) -> tuple[CursorValue, ...]:
    """The values in a cursor from :func:`encode`; with ``sort``, it must have been made for it."""
    invalid = "not a cursor this API returned (it was edited or cut short); start again without a cursor"
    if len(text) > 2048:
        raise CursorError(invalid)
    try:
        body = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        checksum = body.pop("c")
        if body.get("v") != 1 or checksum != _checksum(body) or not isinstance(body["k"], list):
            raise ValueError("checksum")
        values = tuple(_cursor_value_back(v) for v in body["k"])
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise CursorError(invalid) from None
    if sort is not None and body.get("s") != str(sort):
        raise CursorError(f"made for sort {body.get('s') or 'unknown'}, not {sort}; start again without a cursor")
    return values


def _checksum(body: dict[str, typing.Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _cursor_value(value: CursorValue) -> typing.Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise TypeError("cursor times must be timezone-aware")
        return {"t": value.isoformat()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a cursor holds str, int, float, bool, None or datetime values, not {type(value).__name__}")


def _cursor_value_back(value: typing.Any) -> CursorValue:
    if isinstance(value, dict):
        when = datetime.datetime.fromisoformat(value["t"])
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError("unexpected value")
