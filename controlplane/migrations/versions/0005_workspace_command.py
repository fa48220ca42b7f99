"""workspace command and schedule outcome

1. ``workspaces.command``: the main process a workspace runs instead of its
   image's command (null: the image's, or a keep-alive when that would exit
   at once; agent/domain/main_process.py, docs/workspaces.md).
2. ``schedules.last_outcome``: what the schedule's last firing did, e.g. that
   it coalesced into a build of its image still queued or running.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workspaces", sa.Column("command", postgresql.JSONB(), nullable=True))
    op.add_column("schedules", sa.Column("last_outcome", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("schedules", "last_outcome")
    op.drop_column("workspaces", "command")
