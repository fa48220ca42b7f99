"""Strings from outside (agents, CI systems) made safe for PostgreSQL: the one cleaning function.

PostgreSQL ``text`` cannot hold NUL, ``jsonb`` refuses ``\\u0000``, and a lone
surrogate cannot be encoded as UTF-8: any of them made a whole statement fail
(a build that printed a NUL stalled the event consumer). Cleaning
replaces them with U+FFFD, so what the user's build printed is still shown,
and caps the length so a value fits its column.
"""

from __future__ import annotations

import re
import typing

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean(value: str, limit: int | None = None, *, keep: typing.Literal["head", "tail"] = "head") -> str:
    """``value`` without NUL or lone surrogates (each becomes U+FFFD), at most ``limit`` characters.

    ``keep="tail"`` keeps the end instead of the beginning (a log's newest lines).
    """
    if _UNSTORABLE.search(value):
        value = _UNSTORABLE.sub(REPLACEMENT, value)
    if limit is not None and len(value) > limit:
        value = value[-limit:] if keep == "tail" else value[:limit]
    return value


def clean_optional(value: str | None, limit: int | None = None) -> str | None:
    return None if value is None else clean(value, limit)


def clean_tree(value: typing.Any, limit: int | None = None) -> typing.Any:
    """JSON-shaped ``value`` with every string in it (keys too) cleaned; ``limit`` caps each string."""
    if isinstance(value, str):
        return clean(value, limit)
    if isinstance(value, dict):
        return {clean(str(k), limit): clean_tree(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_tree(v, limit) for v in value]
    return value
