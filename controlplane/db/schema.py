"""Does the database's schema match this package's migrations? Checked before a daemon starts.

``a4c-controlplane run`` and ``sync`` call :func:`check` first. The schema
must be at exactly the head this package's migrations end in:

* **newer** (a revision this package does not know: a later release has
  migrated): refuse, and say to upgrade the control plane. Running this
  package's ``migrate`` would not help, it cannot go back.
* **behind** (a known revision short of the head, or no schema at all):
  refuse too, and name ``migrate``. Code running against a schema it was not
  written for fails later and worse (a missing column in the middle of a
  request), so a forgotten ``migrate`` is caught here, in one line.

A database that cannot be reached is not a mismatch: the daemon starts and
``/readyz`` says the database is unreachable, as it does for an outage later
on (docs/operations/rollout.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.metadata
import pathlib

import sqlalchemy as sa
from alembic import script as alembic_script

from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from controlplane.db import migrate


class SchemaMismatch(RuntimeError):
    """The database is at a schema this package was not written for; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Known:
    """This package's migrations: revision id -> name (its file's stem, e.g. 0009_search_drift), and the head."""

    names: dict[str, str]
    head: str


@functools.cache
def known() -> Known:
    scripts = alembic_script.ScriptDirectory(str(migrate.MIGRATIONS))
    names = {s.revision: pathlib.Path(s.path).stem for s in scripts.walk_revisions()}
    heads = scripts.get_heads()
    if len(heads) != 1:  # a branched history is a packaging mistake, not an operator's
        raise RuntimeError(f"migrations have {len(heads)} heads: {sorted(heads)}")
    return Known(names, heads[0])


def package_version() -> str:
    try:
        return importlib.metadata.version("a4c")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def verdict(current: str | None, package: Known, version: str) -> str | None:
    """The one-line refusal for a database at ``current`` (None: no schema), or None when it matches."""
    if current == package.head:
        return None
    this = f"this a4c-controlplane {version} knows up to {package.names[package.head]}"
    if current is None:
        return f'the database has no a4c schema, {this}: run "a4c-controlplane migrate" first'
    if current not in package.names:
        return (
            f"database schema is at {current}, which {this} does not know (a newer release migrated it): "
            f'upgrade the control plane, or restore the backup taken before that "migrate"'
        )
    return f'database schema is at {package.names[current]}, {this}: run "a4c-controlplane migrate" (or upgrade the control plane)'


async def current_revision(db: cp_settings.DatabaseSettings) -> str | None:
    """The revision in alembic_version, None when there is none; OSError/DBAPIError when unreachable."""
    engine = db_engine.create(db, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(sa.text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            if not exists:
                return None
            rows = (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    if len(rows) > 1:  # branches merged by hand: name them all, none is ours alone
        return ",".join(sorted(rows))
    return rows[0] if rows else None


async def check(db: cp_settings.DatabaseSettings, *, timeout: float | None = None) -> bool:
    """Raise :class:`SchemaMismatch` unless the schema is this package's head; False if the database did not answer."""
    try:
        async with asyncio.timeout(timeout or db.connect_timeout + db.command_timeout):
            current = await current_revision(db)
    except (OSError, sa.exc.DBAPIError, TimeoutError):
        return False
    refusal = verdict(current, known(), package_version())
    if refusal is not None:
        raise SchemaMismatch(refusal)
    return True
