"""The agent's logging: shared/logs.py's ECS lines (or text for a terminal), as service ``a4c-agent``.

``host.name`` is the name the agent enrols under (``agent.host_name``,
by default the machine's), so its lines and the control plane's view of the
host agree.
"""

from __future__ import annotations

import logging

from agent import settings as agent_settings
from shared import logs

SERVICE = "a4c-agent"


def setup(settings: agent_settings.Settings) -> None:
    logs.setup(settings.logging, service=SERVICE, host_name=settings.agent.host_name)
    # aiokafka logs every failed reconnect at ERROR, many times a second during
    # an outage; the agent logs (and reports) the outage once, itself.
    logging.getLogger("aiokafka").setLevel(logging.DEBUG if settings.logging.level == "DEBUG" else logging.CRITICAL)
