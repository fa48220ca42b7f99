"""Every database connection is bounded: command timeout, keepalives, pool wait.

The whole-system behaviour (requests answer 503 within seconds while
PostgreSQL is hung) is tests/e2e/test_database_hang.py; these check the
engine itself against a real server.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import sqlalchemy as sa

from controlplane import settings as cp_settings
from controlplane.db import engine as db_engine
from shared import config


def _settings(url: str, **database: object) -> cp_settings.Settings:
    overrides = {"database.url": url, "search.statement_timeout": 0.5, **{f"database.{k}": v for k, v in database.items()}}
    return cp_settings.load(environ={}, **overrides)


async def test_every_connection_has_keepalives_on_both_ends(database_url):
    engine = db_engine.create(_settings(database_url, keepalive_idle=12).database)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            sock = raw.driver_connection._transport.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 12
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 4
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            server = (await conn.execute(sa.text("SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_count')"))).one()
            assert tuple(server) == ("12", "3")
    finally:
        await engine.dispose()


async def test_a_hung_server_fails_a_command_after_command_timeout(private_postgres):
    engine = db_engine.create(_settings(private_postgres.url, command_timeout=1.0, connect_timeout=1.0, pool_timeout=1.0).database)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            private_postgres.freeze()
            started = time.monotonic()
            try:
                # The bound under test is the engine's; this outer one only keeps a failure from hanging the suite.
                async with asyncio.timeout(30):
                    with pytest.raises((TimeoutError, sa.exc.DBAPIError)):
                        await conn.execute(sa.text("SELECT 1"))
            finally:
                private_postgres.thaw()
            assert time.monotonic() - started < 10
    finally:
        await engine.dispose()


def test_the_command_timeout_must_outlast_the_search_statement_timeout():
    with pytest.raises(config.ConfigError, match=r"database.command_timeout"):
        cp_settings.load(environ={}, **{"database.command_timeout": 4, "search.statement_timeout": 5})
