"""Fixtures the event tests share."""

from __future__ import annotations

import pytest
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import engine as db_engine


@pytest.fixture
async def engine(database_url):
    eng = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    yield eng
    await eng.dispose()
