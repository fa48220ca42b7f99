"""Render an example config from a settings model: every key, its default, its description.

Each deployable's ``example-config`` command prints this for its own settings
model, and ``packaging/config/*.yaml`` is that output (tests keep them equal),
so the documentation cannot drift from the code.
"""

from __future__ import annotations

import json
import textwrap
import typing

import pydantic

WIDTH = 96


def render(model: type[pydantic.BaseModel], header: str) -> str:
    """``header`` (comment lines), then one commented YAML section per settings group of ``model``."""
    lines = [header]
    defaults = model()
    for name in model.model_fields:
        group = getattr(defaults, name)
        lines.append("")
        lines.append(f"# {(type(group).__doc__ or name).strip().splitlines()[0]}")
        lines.append(f"{name}:")
        for key, field in type(group).model_fields.items():
            lines.extend(_comment(field, "  "))
            lines.append(f"  {key}: {_yaml(getattr(group, key))}")
    return "\n".join(lines) + "\n"


def _comment(field: pydantic.fields.FieldInfo, indent: str) -> list[str]:
    text = field.description or ""
    allowed = _choices(field.annotation)
    if allowed:
        text = (text + " " if text else "") + f"One of: {', '.join(allowed)}."
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width=WIDTH - len(indent))]


def _choices(annotation: typing.Any) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return []


def _yaml(value: typing.Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value) if value else ("[]" if isinstance(value, list) else "{}")
    return json.dumps(str(value))
