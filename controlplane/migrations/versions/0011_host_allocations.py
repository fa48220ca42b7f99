"""host allocations: per-host reserved CPU, memory and disk, kept by a trigger on workspaces

``host_allocations``: one row per host with the sums over its live workspaces
(placed, not deleted, not failed) that placement used to aggregate on every
decision: CPUs and memory of those not asked to stop, disk of all of them,
disk *promised* to those still pending or creating, and their count. A
separate table, not columns of ``hosts``: heartbeats and reports update the
host row many times a minute, and placement locks the allocation row
(docs/decisions/0011-maintained-allocations.md).

The trigger ``workspaces_allocation`` applies each workspace change's delta
in the same transaction as the change, whatever code path made it; a host's
row is created with the host (``hosts_allocation``). The reconciler checks the
rows against the live aggregate and repairs drift
(controlplane/services/allocations.py). Existing databases are backfilled here.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# What one workspace row holds on its host; the same rule as the live aggregate
# in controlplane/services/allocations.py (LIVE_SUM), which the reconciler compares against.
FUNCTIONS = [
    """
    CREATE FUNCTION a4c_workspace_allocation() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        o_live boolean := false;
        n_live boolean := false;
        d_cpus numeric := 0; d_mem bigint := 0; d_disk bigint := 0; d_promised bigint := 0; d_n integer := 0;
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            o_live := OLD.host_id IS NOT NULL AND OLD.observed_state NOT IN ('deleted', 'failed');
        END IF;
        IF TG_OP <> 'DELETE' THEN
            n_live := NEW.host_id IS NOT NULL AND NEW.observed_state NOT IN ('deleted', 'failed');
        END IF;
        IF o_live AND (NOT n_live OR OLD.host_id <> NEW.host_id) THEN
            UPDATE host_allocations SET
                cpus = cpus - CASE WHEN OLD.desired_state <> 'stopped' THEN OLD.cpus ELSE 0 END,
                memory_mb = memory_mb - CASE WHEN OLD.desired_state <> 'stopped' THEN OLD.memory_mb ELSE 0 END,
                disk_gb = disk_gb - OLD.disk_gb,
                promised_gb = promised_gb - CASE WHEN OLD.observed_state IN ('pending', 'creating') THEN OLD.disk_gb ELSE 0 END,
                workspaces = workspaces - 1
            WHERE host_id = OLD.host_id;
            o_live := false;
        END IF;
        IF n_live THEN
            d_cpus := CASE WHEN NEW.desired_state <> 'stopped' THEN NEW.cpus ELSE 0 END;
            d_mem := CASE WHEN NEW.desired_state <> 'stopped' THEN NEW.memory_mb ELSE 0 END;
            d_disk := NEW.disk_gb;
            d_promised := CASE WHEN NEW.observed_state IN ('pending', 'creating') THEN NEW.disk_gb ELSE 0 END;
            d_n := 1;
        END IF;
        IF o_live THEN  -- still live on the same host: only the difference
            d_cpus := d_cpus - CASE WHEN OLD.desired_state <> 'stopped' THEN OLD.cpus ELSE 0 END;
            d_mem := d_mem - CASE WHEN OLD.desired_state <> 'stopped' THEN OLD.memory_mb ELSE 0 END;
            d_disk := d_disk - OLD.disk_gb;
            d_promised := d_promised - CASE WHEN OLD.observed_state IN ('pending', 'creating') THEN OLD.disk_gb ELSE 0 END;
            d_n := d_n - 1;
        END IF;
        -- Most updates (a running workspace reported running again) change nothing: no row lock then.
        IF n_live AND (d_cpus <> 0 OR d_mem <> 0 OR d_disk <> 0 OR d_promised <> 0 OR d_n <> 0) THEN
            INSERT INTO host_allocations AS a (host_id, cpus, memory_mb, disk_gb, promised_gb, workspaces)
            VALUES (NEW.host_id, d_cpus, d_mem, d_disk, d_promised, d_n)
            ON CONFLICT (host_id) DO UPDATE SET
                cpus = a.cpus + EXCLUDED.cpus, memory_mb = a.memory_mb + EXCLUDED.memory_mb, disk_gb = a.disk_gb + EXCLUDED.disk_gb,
                promised_gb = a.promised_gb + EXCLUDED.promised_gb, workspaces = a.workspaces + EXCLUDED.workspaces;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION a4c_host_allocation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO host_allocations (host_id) VALUES (NEW.id) ON CONFLICT (host_id) DO NOTHING;
        RETURN NULL;
    END $$
    """,
]

TRIGGERS = [
    "CREATE TRIGGER workspaces_allocation AFTER INSERT OR DELETE OR UPDATE OF host_id, observed_state, desired_state, cpus, memory_mb, disk_gb"
    " ON workspaces FOR EACH ROW EXECUTE FUNCTION a4c_workspace_allocation()",
    "CREATE TRIGGER hosts_allocation AFTER INSERT ON hosts FOR EACH ROW EXECUTE FUNCTION a4c_host_allocation()",
]

BACKFILL = """
    INSERT INTO host_allocations (host_id, cpus, memory_mb, disk_gb, promised_gb, workspaces)
    SELECT h.id,
           coalesce(sum(w.cpus) FILTER (WHERE w.desired_state <> 'stopped'), 0),
           coalesce(sum(w.memory_mb) FILTER (WHERE w.desired_state <> 'stopped'), 0),
           coalesce(sum(w.disk_gb), 0),
           coalesce(sum(w.disk_gb) FILTER (WHERE w.observed_state IN ('pending', 'creating')), 0),
           count(w.id)
    FROM hosts h
    LEFT JOIN workspaces w ON w.host_id = h.id AND w.observed_state NOT IN ('deleted', 'failed')
    GROUP BY h.id
"""


def upgrade() -> None:
    op.create_table(
        "host_allocations",
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("cpus", sa.Numeric(12, 2), server_default="0", nullable=False),
        sa.Column("memory_mb", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("disk_gb", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("promised_gb", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("workspaces", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("host_id"),
    )
    # Lock the writers out while the backfill reads, so no change falls between it and the trigger.
    op.execute("LOCK TABLE workspaces, hosts IN SHARE ROW EXCLUSIVE MODE")
    for statement in FUNCTIONS + TRIGGERS:
        op.execute(statement)
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS hosts_allocation ON hosts")
    op.execute("DROP TRIGGER IF EXISTS workspaces_allocation ON workspaces")
    op.execute("DROP FUNCTION IF EXISTS a4c_host_allocation()")
    op.execute("DROP FUNCTION IF EXISTS a4c_workspace_allocation()")
    op.drop_table("host_allocations")
