"""The control plane refuses to start against a schema it does not know, in one line naming both versions.

Real processes (``a4c-controlplane run`` and ``sync``) against real
databases on the harness's PostgreSQL: one stamped with a revision no
migration here has, one a migration behind, one empty. Each start exits 2
(systemd's RestartPreventExitStatus) at once with a single line on stderr.
"""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys

import asyncpg
import pytest
import yaml

from controlplane.db import migrate, schema
from tests.harness import ports, postgres_server

BIN = pathlib.Path(sys.executable).parent


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _start(tmp_path: pathlib.Path, url: str, command: str = "run") -> subprocess.CompletedProcess[str]:
    config = tmp_path / f"cp-{command}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": {"url": url},
                "http": {"host": "127.0.0.1", "port": ports.free_port()},
                # Nothing listens here: a start that got past the check would not exit by itself.
                "kafka": {"bootstrap_servers": [f"127.0.0.1:{ports.free_port()}"]},
                "logging": {"format": "text"},
                # sync refuses to start without an index to feed, before it asks the database.
                "search": {"elasticsearch_url": f"http://127.0.0.1:{ports.free_port()}"},
            }
        )
    )
    return subprocess.run(
        [str(BIN / "a4c-controlplane"), command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("command", ["run", "sync"])
def test_a_start_against_a_newer_unknown_schema_exits_with_one_line_naming_both(make_database, tmp_path, command) -> None:
    url = make_database()
    postgres_server.in_thread(migrate.upgrade, url)
    head = schema.known()
    unknown = "9999"  # a revision no migration here has
    assert unknown not in head.names
    asyncio.run(_execute(url, f"UPDATE alembic_version SET version_num = '{unknown}'"))
    done = _start(tmp_path, url, command)
    assert done.returncode == 2, done.stderr
    assert _error_lines(done) == [
        f"error: database schema is at {unknown}, which this a4c-controlplane {schema.package_version()} knows up to"
        f" {head.names[head.head]} does not know (a newer release migrated it): upgrade the control plane,"
        ' or restore the backup taken before that "migrate"'
    ], done.stderr
    assert "Traceback" not in done.stderr


def test_a_start_against_a_schema_behind_names_migrate(make_database, tmp_path) -> None:
    url = make_database()
    head = schema.known()
    previous = sorted(head.names)[-2]
    postgres_server.in_thread(migrate.upgrade, url, previous)
    done = _start(tmp_path, url)
    assert done.returncode == 2, done.stderr
    (line,) = _error_lines(done)
    assert line == (
        f"error: database schema is at {head.names[previous]}, this a4c-controlplane {schema.package_version()} knows up to"
        f' {head.names[head.head]}: run "a4c-controlplane migrate" (or upgrade the control plane)'
    )


def test_a_start_against_an_empty_database_names_migrate(make_database, tmp_path) -> None:
    done = _start(tmp_path, make_database())
    assert done.returncode == 2, done.stderr
    (line,) = _error_lines(done)
    assert line.startswith("error: the database has no a4c schema, this a4c-controlplane") and 'run "a4c-controlplane migrate" first' in line


def test_the_known_head_is_the_last_migration_file() -> None:
    head = schema.known()
    files = sorted(p.stem for p in migrate.MIGRATIONS.joinpath("versions").glob("0*.py"))
    assert head.names[head.head] == files[-1]
    assert schema.verdict(head.head, head, "0.1.0") is None


def test_migrate_says_whether_it_changed_the_schema(make_database, tmp_path) -> None:
    """A deploy tool reports "changed" from this line (ansible/roles/a4c_controlplane/tasks/migrate.yml)."""
    url = make_database()
    head = schema.known().head
    first = _start(tmp_path, url, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == f"database migrated from an empty database to {head} (head)"
    again = _start(tmp_path, url, "migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == f"database already at {head} (head)"
