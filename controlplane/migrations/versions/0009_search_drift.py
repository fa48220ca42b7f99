"""search drift: what the sync worker's last check-and-repair left unrepaired

``search_drift``: one row per index alias, written by the periodic
check-and-repair of the sync worker (controlplane/search/healing.py). The
search API reads it: while ``unrepaired`` is above zero its answers from
Elasticsearch say ``degraded``.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_drift",
        sa.Column("alias", sa.String(255), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("unrepaired", sa.Integer(), server_default="0", nullable=False),
        sa.Column("repaired", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("alias"),
    )


def downgrade() -> None:
    op.drop_table("search_drift")
