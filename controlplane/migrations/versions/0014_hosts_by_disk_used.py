"""hosts in order of disk used: the index placement searches (``host_allocations_disk_fraction_before``)

Placement ranks eligible hosts by disk used *after* placing the request,
``(used + promised + request) / total``, which is never below the disk used
*before* it, ``(used + promised) / total``. Read in that order, the search can
stop at the first host whose fraction before exceeds the last fraction it must
show, instead of judging the whole fleet
(docs/decisions/0014-placement-examines-the-least-used-hosts.md).

``promised`` is kept in ``host_allocations`` (migration 0011) and ``used`` and
``total`` in ``hosts``, and an index covers one table, so the host's disk used
(its last report) and total (the reported size, else the enrolled capacity)
are copied into its allocation row by a trigger on ``hosts`` in the same
transaction as every change of them. Only a change of those columns touches
the row: heartbeats do not, so placements do not queue behind them. The
reconciler checks the copies with the rest of the row
(controlplane/services/allocations.py).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# The same expression as controlplane/services/placement_ranking.py FRACTION_BEFORE (the planner matches it).
KEY = "((disk_used_bytes + promised_gb * 1073741824)::float8 / NULLIF(GREATEST(disk_total_bytes, 0), 0))"
TOTAL = "CASE WHEN NEW.disk_total_bytes <> 0 THEN NEW.disk_total_bytes ELSE NEW.capacity_disk_bytes END"

FUNCTIONS = [
    f"""
    CREATE OR REPLACE FUNCTION a4c_host_allocation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO host_allocations AS a (host_id, disk_used_bytes, disk_total_bytes) VALUES (NEW.id, NEW.disk_used_bytes, {TOTAL})
        ON CONFLICT (host_id) DO UPDATE SET disk_used_bytes = EXCLUDED.disk_used_bytes, disk_total_bytes = EXCLUDED.disk_total_bytes
        WHERE (a.disk_used_bytes, a.disk_total_bytes) IS DISTINCT FROM (EXCLUDED.disk_used_bytes, EXCLUDED.disk_total_bytes);
        RETURN NULL;
    END $$
    """  # noqa: S608 - built from constants only; the values are parameters,
]
TRIGGERS = [
    "CREATE TRIGGER hosts_disk_allocation AFTER UPDATE OF disk_used_bytes, disk_total_bytes, capacity_disk_bytes ON hosts FOR EACH ROW"
    " WHEN ((OLD.disk_used_bytes, OLD.disk_total_bytes, OLD.capacity_disk_bytes)"
    " IS DISTINCT FROM (NEW.disk_used_bytes, NEW.disk_total_bytes, NEW.capacity_disk_bytes))"
    " EXECUTE FUNCTION a4c_host_allocation()",
]
BACKFILL = """
    UPDATE host_allocations a
    SET disk_used_bytes = h.disk_used_bytes,
        disk_total_bytes = CASE WHEN h.disk_total_bytes <> 0 THEN h.disk_total_bytes ELSE h.capacity_disk_bytes END
    FROM hosts h WHERE h.id = a.host_id
"""
OLD_FUNCTION = """
    CREATE OR REPLACE FUNCTION a4c_host_allocation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO host_allocations (host_id) VALUES (NEW.id) ON CONFLICT (host_id) DO NOTHING;
        RETURN NULL;
    END $$
"""


def upgrade() -> None:
    op.add_column("host_allocations", sa.Column("disk_used_bytes", sa.BigInteger(), nullable=True))
    op.add_column("host_allocations", sa.Column("disk_total_bytes", sa.BigInteger(), server_default="0", nullable=False))
    # Lock the writers out while the backfill reads, so no change falls between it and the trigger.
    op.execute("LOCK TABLE hosts, host_allocations IN SHARE ROW EXCLUSIVE MODE")
    for statement in FUNCTIONS + TRIGGERS:
        op.execute(statement)
    op.execute(BACKFILL)
    op.execute(f"CREATE INDEX host_allocations_disk_fraction_before ON host_allocations ({KEY})")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS host_allocations_disk_fraction_before")
    op.execute("DROP TRIGGER IF EXISTS hosts_disk_allocation ON hosts")
    op.execute(OLD_FUNCTION)
    op.drop_column("host_allocations", "disk_total_bytes")
    op.drop_column("host_allocations", "disk_used_bytes")
