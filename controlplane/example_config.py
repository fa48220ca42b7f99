"""Render the example config from the settings models: every key, its default, its description.

``packaging/config/controlplane.yaml`` is this output (``a4c-controlplane
example-config``; a test keeps them equal), so the documentation cannot drift
from the code.
"""

from __future__ import annotations

import json
import textwrap
import typing

import pydantic

from controlplane import settings as cp_settings

WIDTH = 96

_HEADER = """\
# A4C control plane configuration (a4c-controlplane run --config /etc/a4c/controlplane.yaml).
#
# Every key is optional; the value shown is the default. Environment
# variables override the file: A4C_<SECTION>__<KEY>, e.g. A4C_DATABASE__URL.
# An unknown or misspelt key is an error, not silently ignored.
#
# Generated from controlplane/settings.py by `a4c-controlplane example-config`.
"""


def render() -> str:
    lines = [_HEADER]
    defaults = cp_settings.Settings()
    for name in cp_settings.Settings.model_fields:
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
