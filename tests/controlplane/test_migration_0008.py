"""Migration 0008 (image names per owner): existing images keep the tag their builds and workspaces use, and names stop being global."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from controlplane.db import migrate
from tests.controlplane import migration_sql


def test_existing_images_keep_their_tag_and_two_owners_may_then_share_a_name(make_database):
    url = make_database()
    migrate.upgrade(url, "0007")
    alice, bob, image = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    asyncio.run(
        migration_sql.run(
            url,
            ("INSERT INTO users (id, name, role) VALUES ($1, 'alice', 'user'), ($2, 'bob', 'user')", alice, bob),
            ("INSERT INTO images (id, name, owner_id, dockerfile) VALUES ($1, 'devbox', $2, 'FROM busybox')", image, alice),
        )
    )
    migrate.upgrade(url)
    [[kept]] = asyncio.run(migration_sql.run(url, ("SELECT tag FROM images WHERE id = $1", image)))
    assert kept["tag"] == "a4c/devbox:latest"
    # Bob's private devbox is no clash now; a second one of Alice's and a second shared one are.
    asyncio.run(
        migration_sql.run(url, ("INSERT INTO images (id, name, owner_id, dockerfile) VALUES ($1, 'devbox', $2, 'FROM busybox')", uuid.uuid4(), bob))
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        asyncio.run(
            migration_sql.run(url, ("INSERT INTO images (id, name, owner_id, dockerfile) VALUES ($1, 'devbox', $2, 'FROM x')", uuid.uuid4(), alice))
        )
    asyncio.run(migration_sql.run(url, ("UPDATE images SET shared = true WHERE id = $1", image)))
    with pytest.raises(asyncpg.UniqueViolationError):
        asyncio.run(migration_sql.run(url, ("UPDATE images SET shared = true WHERE owner_id = $1", bob)))
    tags = asyncio.run(migration_sql.run(url, ("SELECT tag FROM images ORDER BY tag",)))[0]
    assert len({t["tag"] for t in tags}) == 2, "a row written without a tag gets a unique one"
