"""The control plane's example config: ``packaging/config/controlplane.yaml`` is this output (a test keeps them equal)."""

from __future__ import annotations

from controlplane import settings as cp_settings
from shared import example_config

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
    return example_config.render(cp_settings.Settings, _HEADER)
