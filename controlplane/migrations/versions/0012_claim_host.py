"""claim a host's allocation row in one round trip: ``a4c_claim_host``

A create holds the first ranked host's allocation row that nobody else holds
and that still has room (docs/decisions/0011-maintained-allocations.md). Rows
the ``FOR UPDATE`` re-check rejects stay locked until the enclosing
(sub)transaction ends, so a claim that takes nothing must roll back to before
it: a waiter holding rejected rows can close a cycle with another waiter. That
took three round trips from the control plane (SAVEPOINT, the claim, RELEASE or
ROLLBACK TO). Here the claim runs in a PL/pgSQL block with an exception
handler, which is a subtransaction on the server: when nothing is claimed the
block raises, and the rollback releases the rejected rows.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UP = """
CREATE FUNCTION a4c_claim_host(ranked uuid[], need_cpus numeric, need_memory_mb bigint, need_bytes bigint) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    claimed uuid;
BEGIN
    BEGIN
        SELECT a.host_id INTO claimed
        FROM host_allocations a JOIN hosts h ON h.id = a.host_id
        WHERE a.host_id = ANY(ranked)
          AND h.capacity_cpus - a.cpus >= need_cpus AND h.capacity_memory_mb - a.memory_mb >= need_memory_mb
          AND CASE WHEN h.disk_total_bytes <> 0 THEN h.disk_total_bytes ELSE h.capacity_disk_bytes END
              - h.disk_used_bytes - a.promised_gb * 1073741824 >= need_bytes
        ORDER BY array_position(ranked, a.host_id)
        LIMIT 1
        FOR UPDATE OF a SKIP LOCKED;
        IF claimed IS NULL THEN
            RAISE no_data_found;  -- roll the block back: no rejected row stays locked
        END IF;
    EXCEPTION WHEN no_data_found THEN
        RETURN NULL;
    END;
    RETURN claimed;
END $$
"""


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS a4c_claim_host(uuid[], numeric, bigint, bigint)")
