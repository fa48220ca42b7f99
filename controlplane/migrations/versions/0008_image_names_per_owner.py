"""image names unique per owner, shared names unique among shared images, and a stored tag

A name was unique across all users, so registering one answered 409 when
somebody else had a private image of that name, revealing it. Now:

1. ``(owner_id, name)`` is unique: each user has their own names.
2. Among shared images a name is unique too (a partial index): shared images
   live in one namespace, so "your own image of that name, else the shared
   one" always resolves to one image (controlplane/services/images.py).
3. ``tag``: the Docker tag agents build the image as. It was derived from the
   name (``a4c/<name>:latest``), which two owners may now share on one host;
   existing images keep that tag (their builds and workspaces use it), new
   ones get one carrying their id.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
# As in controlplane/db/models.py (migrations do not import the models): rows inserted by hand get a unique tag.
TAG_DEFAULT = "'a4c/image:' || replace(gen_random_uuid()::text, '-', '')"
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("tag", sa.String(255), nullable=True))
    op.execute(sa.text("UPDATE images SET tag = 'a4c/' || name || '\\:latest'"))
    op.alter_column("images", "tag", nullable=False, server_default=sa.text(TAG_DEFAULT))
    op.create_unique_constraint("images_tag_key", "images", ["tag"])
    op.drop_constraint("images_name_key", "images", type_="unique")
    op.create_unique_constraint("images_owner_name_key", "images", ["owner_id", "name"])
    op.create_index("images_shared_name", "images", ["name"], unique=True, postgresql_where=sa.text("shared"))


def downgrade() -> None:
    # Fails if two owners now use one name: there is no global name to go back to.
    op.drop_index("images_shared_name", table_name="images")
    op.drop_constraint("images_owner_name_key", "images", type_="unique")
    op.create_unique_constraint("images_name_key", "images", ["name"])
    op.drop_constraint("images_tag_key", "images", type_="unique")
    op.drop_column("images", "tag")
