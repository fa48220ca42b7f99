"""host keys that rotate, and CI systems with their own identity

1. ``a4c_host_key_changed``: a change of a host's ``signing_key`` (or the
   host's removal) NOTIFYs ``a4c_host_keys`` with the host id at commit, so
   every control plane drops the superseded key at once
   (controlplane/events/keys.py).
2. ``ci_systems``: a CI system's name, HMAC key (usable to verify, so kept
   like ``hosts.signing_key``) and what it may build (image names, owners'
   user names); controlplane/ci.py verifies ``<prefix>.ci-builds`` with it.
3. ``jobs.requested_by``: who asked for a job besides its user, e.g.
   ``ci:<system>`` (docs/ci.md).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NOTIFY = [
    """
    CREATE FUNCTION a4c_host_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.signing_key IS NOT DISTINCT FROM OLD.signing_key THEN
            RETURN NULL;
        END IF;
        PERFORM pg_notify('a4c_host_keys', OLD.id::text);
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER hosts_key_changed AFTER UPDATE OF signing_key OR DELETE ON hosts FOR EACH ROW EXECUTE FUNCTION a4c_host_key_changed()",
]


def upgrade() -> None:
    for statement in NOTIFY:
        op.execute(statement)
    op.create_table(
        "ci_systems",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("signing_key", sa.String(length=128), nullable=False),
        sa.Column("images", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("owners", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("name ~ '^[a-z][a-z0-9_.-]{0,39}$'", name="ci_systems_name_format"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.add_column("jobs", sa.Column("requested_by", sa.String(length=160), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "requested_by")
    op.drop_table("ci_systems")
    op.execute("DROP TRIGGER IF EXISTS hosts_key_changed ON hosts")
    op.execute("DROP FUNCTION IF EXISTS a4c_host_key_changed()")
