"""``a4c-controlplane``: run the control plane and its maintenance commands.

Every command loads and validates the settings first; a bad setting prints
one line naming the key and exits 2 (no traceback).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from controlplane import settings as cp_settings
from shared import config, eventloop, logrepeats, logs

EXIT_CONFIG = 2
# Also for a schema this package was not written for: only an operator can
# fix it (migrate or upgrade), so systemd must not restart into it
# (RestartPreventExitStatus=2 in packaging/systemd).
EXIT_SCHEMA = 2


def _load(path: str | None) -> cp_settings.Settings:
    try:
        # A4C_FAILPOINTS is parsed when this module is first imported: a bad
        # value is a configuration error like any other (one line, exit 2).
        from shared import failpoints  # noqa: F401

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
    from controlplane.db import schema

    settings = _load(config_path)
    try:
        before = asyncio.run(schema.current_revision(settings.database))
        db_migrate.upgrade(settings.database.url, revision)
        after = asyncio.run(schema.current_revision(settings.database))
    except OSError as exc:
        click.echo(f"error: cannot reach the database at database.url: {exc}", err=True)
        sys.exit(1)
    # A deploy tool tells "changed" from "nothing to do" by this line (ansible/roles/a4c_controlplane).
    if before == after:
        click.echo(f"database already at {after} ({revision})")
    else:
        click.echo(f"database migrated from {before or 'an empty database'} to {after} ({revision})")


def _check_schema(settings: cp_settings.Settings) -> None:
    """Exit with one line when the database's schema is not the one this package's migrations end in."""
    from controlplane.db import schema

    try:
        checked = asyncio.run(schema.check(settings.database))
    except schema.SchemaMismatch as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_SCHEMA)
    if not checked:
        logging.getLogger(__name__).warning("database schema not checked: the database did not answer (/readyz reports it)")


def _configure_logging(settings: cp_settings.Settings) -> None:
    # One schema for both daemons (shared/logs.py); a broker outage: one aiokafka line per kind per 30 s.
    logs.setup(settings.logging, service="a4c-controlplane", filters=[logrepeats.RepeatFilter()])


@main.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="A4C_CONFIG", help="YAML settings file.")
def run(config_path: str | None) -> None:
    """Serve the HTTP API and run the background loops (relay, consumers, reconciler, scheduler) until SIGTERM."""
    settings = _load(config_path)
    from controlplane import workers
    from controlplane.api import app as api_app
    from controlplane.api import server

    _configure_logging(settings)
    _check_schema(settings)
    try:
        eventloop.run(
            server.serve(settings, contexts=(*api_app.DEFAULT_CONTEXTS, workers.workers_ctx)),
            settings.runtime.event_loop,
            setting="runtime.event_loop",
        )
    except eventloop.EventLoopUnavailable as exc:
        # A configuration error, exit code 2: the unit's RestartPreventExitStatus keeps systemd from retrying it.
        click.echo(f"Config error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


main.add_command(run, "serve")


@main.command("sync")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="A4C_CONFIG", help="YAML settings file.")
def sync_command(config_path: str | None) -> None:
    """Run only the Elasticsearch sync consumer (job-sync topic -> jobs alias) until SIGTERM."""
    from controlplane.search import commands as search_commands

    settings = _load(config_path)
    _configure_logging(settings)
    # A setting it cannot run without is the one line to show, before the database is asked.
    if not search_commands.needs_elasticsearch(settings):
        sys.exit(EXIT_CONFIG)
    _check_schema(settings)
    sys.exit(asyncio.run(search_commands.run_sync(settings)))


@main.group("search")
def search_group() -> None:
    """Maintain the Elasticsearch jobs index."""


@search_group.command("reindex")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="A4C_CONFIG", help="YAML settings file.")
@click.option("--keep-old", is_flag=True, help="Keep the indices the alias pointed at before (default: delete them).")
def search_reindex(config_path: str | None, keep_old: bool) -> None:
    """Build a new index from PostgreSQL and swap the alias to it atomically (resumes a crashed run)."""
    from controlplane.search import commands as search_commands

    settings = _load(config_path)
    _configure_logging(settings)
    sys.exit(asyncio.run(search_commands.run_reindex(settings, keep_old=keep_old)))


@search_group.command("check")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="A4C_CONFIG", help="YAML settings file.")
@click.option("--repair", is_flag=True, help="Fix drifted days with versioned writes, then check again.")
def search_check(config_path: str | None, repair: bool) -> None:
    """Compare PostgreSQL and the index per day (count, version sum and max); exit 1 if they differ."""
    from controlplane.search import commands as search_commands

    settings = _load(config_path)
    _configure_logging(settings)
    sys.exit(asyncio.run(search_commands.run_check(settings, repair=repair)))


@main.command("create-admin")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="A4C_CONFIG", help="YAML settings file.")
@click.option("--name", required=True, help="The admin's user name (created if missing).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Write the token here (mode 0600) instead of printing it.")
def create_admin(config_path: str | None, name: str, token_file: str | None) -> None:
    """Bootstrap an admin user and print (or write) a new API token for it. The token is shown once."""
    from controlplane import errors

    settings = _load(config_path)
    try:
        token = asyncio.run(_create_admin(settings, name))
    except errors.DomainError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot reach the database at database.url: {exc}", err=True)
        sys.exit(1)
    if token_file is None:
        click.echo(token)
        return
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o600)
    click.echo(f"admin {name}: token written to {token_file}", err=True)


async def _create_admin(settings: cp_settings.Settings, name: str) -> str:
    from controlplane.db import engine as db_engine
    from controlplane.services import users

    engine = db_engine.create(settings.database)
    try:
        async with db_engine.sessionmaker(engine)() as session, session.begin():
            issued = await users.bootstrap_admin(session, name)
        return issued.token
    finally:
        await engine.dispose()


@main.command("example-config")
def example_config() -> None:
    """Print the example config: every key with its default and description."""
    from controlplane import example_config as rendering

    click.echo(rendering.render(), nl=False)


if __name__ == "__main__":
    main()
