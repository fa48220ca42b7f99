"""PostgreSQL fixtures: the server, a migrated database per test, fresh empty ones on demand.

Each test gets a database of its own, so no test sees rows another left: the
schema is migrated once per session (each xdist worker is a session of its
own) into a template database, and every test's database is a copy of it
(``CREATE DATABASE … TEMPLATE``: tens of milliseconds, where migrating costs
about a second). PostgreSQL copies only a database nobody is connected to, so
the template refuses connections once migrated (``ALLOW_CONNECTIONS false``).
A module whose fixtures must share one database across its tests (a server
process started once per module) takes ``module_database_url`` and says why.

Every database the harness creates is named ``a4c_test_<run id>_<n>``, so
parallel runs on one server never meet, and is dropped when its fixture ends;
at the end of the session any still there is dropped and, if one cannot be,
the session fails. Set ``A4C_TEST_EMBEDDED_POSTGRES=1`` to use the embedded
server even where one answers on 127.0.0.1:5432.
"""

from __future__ import annotations

import itertools
import os
import typing

import pytest

from tests.harness import fixtures_run, postgres_server, run

_numbers = itertools.count(1)


def _prefix(run_id: str) -> str:
    return f"{postgres_server.DATABASE_PREFIX}{run_id}_"


def _new_database(admin_url: str, run_id: str) -> str:
    return postgres_server.create_database(admin_url, f"{_prefix(run_id)}{next(_numbers)}")


def _drop(admin_url: str, url: str) -> None:
    postgres_server.drop_database(admin_url, url.rsplit("/", 1)[1].split("?")[0])


@pytest.fixture(scope="session")
def postgres_admin_url(request: pytest.FixtureRequest, harness_run: run.Run) -> typing.Iterator[str]:
    """``postgresql://user@host:port/postgres`` of the server tests use; CREATE DATABASE works through it."""
    embedded = None
    configured = os.environ.get(postgres_server.ENV_URL)
    if configured:
        if not postgres_server.answers(configured):
            raise postgres_server.PostgresError(f"{postgres_server.ENV_URL}={configured} does not answer")
        url = configured
    elif not os.environ.get("A4C_TEST_EMBEDDED_POSTGRES") and postgres_server.answers(postgres_server.LOCAL_URL):
        url = postgres_server.LOCAL_URL
    else:
        embedded = postgres_server.EmbeddedPostgres(harness_run)
        seconds = embedded.start()
        fixtures_run.report(request.config, f"started embedded PostgreSQL at {embedded.url} in {seconds:.2f} s")
        url = embedded.url
    try:
        yield url
        prefix = _prefix(harness_run.id)
        for name in postgres_server.databases(url, prefix):
            postgres_server.drop_database(url, name)
        left = postgres_server.databases(url, prefix)
        if left:
            pytest.fail(f"databases could not be dropped: {', '.join(left)}", pytrace=False)
    finally:
        if embedded is not None:
            embedded.stop()


@pytest.fixture(scope="session")
def migrated_template(postgres_admin_url: str, test_run_id: str) -> typing.Iterator[str]:
    """The name of this session's template database: migrated to head once, then closed to connections."""
    from controlplane.db import migrate  # imported late: tests that never touch the database need not load Alembic

    name = f"{_prefix(test_run_id)}template"
    url = postgres_server.create_database(postgres_admin_url, name)
    try:
        # Alembic's env runs its own event loop: keep it off any loop the caller may be running.
        postgres_server.in_thread(migrate.upgrade, url)
        postgres_server.close_to_connections(postgres_admin_url, name)
        yield name
    finally:
        _drop(postgres_admin_url, url)


def _clone(admin_url: str, run_id: str, template: str) -> str:
    return postgres_server.create_database(admin_url, f"{_prefix(run_id)}{next(_numbers)}", template=template)


@pytest.fixture
def database_url(postgres_admin_url: str, test_run_id: str, migrated_template: str) -> typing.Iterator[str]:
    """A database of this test's own, migrated to head: ``postgresql://…/a4c_test_<run>_<n>``, dropped after it."""
    url = _clone(postgres_admin_url, test_run_id, migrated_template)
    try:
        yield url
    finally:
        _drop(postgres_admin_url, url)


@pytest.fixture(scope="module")
def module_database_url(postgres_admin_url: str, test_run_id: str, migrated_template: str) -> typing.Iterator[str]:
    """One migrated database for the whole module, for module-scoped fixtures (a control plane started
    once per module); a module using it says why its tests must share state."""
    url = _clone(postgres_admin_url, test_run_id, migrated_template)
    try:
        yield url
    finally:
        _drop(postgres_admin_url, url)


@pytest.fixture
def make_database(postgres_admin_url: str, test_run_id: str) -> typing.Iterator[typing.Callable[[], str]]:
    """Factory: each call returns the URL of a new, empty (unmigrated) database, dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(_new_database(postgres_admin_url, test_run_id))
        return made[-1]

    yield make
    for url in made:
        _drop(postgres_admin_url, url)


@pytest.fixture(scope="module")
def postgres_replica(postgres_admin_url: str, harness_run: run.Run) -> typing.Iterator[postgres_server.HotStandby]:
    """A streaming hot standby of the test server (``pg_basebackup -R``): ``.url`` (its ``postgres``
    database; ``postgres_server.with_database(url, name)`` for another), ``.pause_replay()``,
    ``.resume_replay()``, ``.stop()``. Databases created on the primary appear on it."""
    standby = postgres_server.HotStandby(harness_run, postgres_admin_url)
    try:
        standby.start()
        yield standby
    finally:
        standby.stop()


@pytest.fixture(scope="module")
def private_postgres(request: pytest.FixtureRequest, harness_run: run.Run) -> typing.Iterator[postgres_server.EmbeddedPostgres]:
    """A PostgreSQL server of this module's own (the embedded wheel's), for tests that hang it:
    ``.url`` (its ``postgres`` database), ``.freeze()`` (SIGSTOP: connections open, nothing answers),
    ``.thaw()``. A module using it overrides ``module_database_url`` (or ``database_url``) with a database on it."""
    server = postgres_server.EmbeddedPostgres(harness_run)
    try:
        seconds = server.start()
        fixtures_run.report(request.config, f"started a private PostgreSQL at {server.url} in {seconds:.2f} s")
        yield server
    finally:
        server.stop()
