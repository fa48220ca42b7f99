"""Health and readiness answers."""

from __future__ import annotations

import typing

from controlplane.api.schemas import common


class Health(common.Out):
    status: typing.Literal["ok"]


class Ready(common.Out):
    status: typing.Literal["ready"]
    database: typing.Literal["ok"]


class Version(common.Out):
    version: str
    schema_revision: str
