"""The agent's example config: ``packaging/config/agent.yaml`` is this output (a test keeps them equal)."""

from __future__ import annotations

from agent import settings as agent_settings
from shared import example_config

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
    return example_config.render(agent_settings.Settings, _HEADER)
