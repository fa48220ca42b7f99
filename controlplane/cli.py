"""``a4c-controlplane``: run the control plane and its maintenance commands.

Every command loads and validates the settings first; a bad setting prints
one line naming the key and exits 2 (no traceback).
"""

from __future__ import annotations

import sys

import click

from controlplane import settings as cp_settings
from shared import config

EXIT_CONFIG = 2


def _load(path: str | None) -> cp_settings.Settings:
    try:
        return cp_settings.load(path)
    except config.ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """A4C control plane."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="A4C_CONFIG", help="YAML settings file.")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate(config_path: str | None, revision: str) -> None:
    """Apply database migrations (safe to run on every deploy)."""
    from controlplane.db import migrate as db_migrate

    settings = _load(config_path)
    try:
        db_migrate.upgrade(settings.database.url, revision)
    except OSError as exc:
        click.echo(f"error: cannot reach the database at database.url: {exc}", err=True)
        sys.exit(1)
    click.echo(f"database migrated to {revision}")


if __name__ == "__main__":  # pragma: no cover
    main()
