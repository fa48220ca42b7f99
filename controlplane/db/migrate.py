"""Apply Alembic migrations programmatically (``a4c-controlplane migrate``, tests, ``a4c up``).

Synchronous on purpose: Alembic's env runs its own event loop, so call these
from a thread when already inside one.
"""

from __future__ import annotations

import pathlib

from alembic import command
from alembic import config as alembic_config

MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "migrations"


def _config(url: str) -> alembic_config.Config:
    cfg = alembic_config.Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # '%' must be escaped for configparser interpolation (passwords may hold it).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(_config(url), revision)


def revision(url: str, message: str, *, autogenerate: bool = True) -> None:
    """Developer helper: write a new migration file from the models' diff."""
    command.revision(_config(url), message=message, autogenerate=autogenerate)
