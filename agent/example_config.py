"""Render the example config from the settings models: every key, its default, its description.

``packaging/config/agent.yaml`` is this output (a test keeps them equal), so
the documentation cannot drift from the code.
"""

from __future__ import annotations

import json
import textwrap
import typing

import pydantic

from agent import settings as agent_settings

_HEADER = """\
# A4C node agent configuration (a4c-agent run --config /etc/a4c/agent.yaml).
#
# Every key is optional; the value shown is the default. Environment
# variables override the file: A4C_<SECTION>__<KEY>, e.g. A4C_KAFKA__TOPIC_PREFIX.
# SIGHUP reloads this file; kafka, commands, agent.state_dir,
# agent.control_plane_url, docker.base_url and the metrics address need a restart.
#
# Generated from agent/settings.py by `a4c-agent example-config`.
"""


def render() -> str:
    lines = [_HEADER]
    defaults = agent_settings.Settings()
    for name, field in agent_settings.Settings.model_fields.items():
        group = getattr(defaults, name)
        doc = (type(group).__doc__ or "").strip().splitlines()[0]
        lines.append("")
        lines.append(f"# {doc}")
        lines.append(f"{name}:")
        for key, sub in type(group).model_fields.items():
            lines.extend(_comment(sub, indent="  "))
            lines.append(f"  {key}: {_yaml(getattr(group, key))}")
    return "\n".join(lines) + "\n"


def _comment(field: pydantic.fields.FieldInfo, indent: str) -> list[str]:
    text = field.description or ""
    allowed = _choices(field.annotation)
    if allowed:
        text = (text + " " if text else "") + f"One of: {', '.join(allowed)}."
    if not text:
        return []
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width=96 - len(indent))]


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
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value) if value else ("[]" if isinstance(value, list) else "{}")
    return json.dumps(str(value))
