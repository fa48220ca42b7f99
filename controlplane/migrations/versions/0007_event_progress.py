"""hearing the agents: the events consumer's applied-through position, and report versions

1. ``event_progress``: per partition of ``<prefix>.events``, the time up to
   which the events consumer has applied everything, and when hearing last
   resumed after a gap (controlplane/domain/hearing.py). The reconciler
   judges a host's silence against it, so a broker outage or a lagging
   consumer is not taken for dead agents.
2. ``hosts.inventory_seq`` and ``hosts.disk_seq``: the agent's event version
   of the stored inventory and disk report. They order those reports, so the
   time columns can hold when the control plane received them (its clock)
   instead of the agent's clock.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_progress",
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("applied_through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition"),
    )
    op.add_column("hosts", sa.Column("inventory_seq", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("hosts", sa.Column("disk_seq", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("hosts", "disk_seq")
    op.drop_column("hosts", "inventory_seq")
    op.drop_table("event_progress")
