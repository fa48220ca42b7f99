"""changes of jobs and workspaces NOTIFY ``a4c_changes``, for blocking reads

Every insert, update or delete of a job or a workspace NOTIFYs
``a4c_changes`` at commit with ``job:<id>:<version>`` or
``workspace:<id>:<version>``. ``version`` is the index a blocking read
compares against (bumped on every update by ``a4c_bump_version``, migration
0001); a delete carries the version it would have had next. Each API
instance LISTENs on one connection and wakes the requests waiting for that
object (controlplane/api/watches.py, controlplane/api/changes.py).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UP = [
    """
    CREATE FUNCTION a4c_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('a4c_changes', TG_ARGV[0] || ':' || OLD.id::text || ':' || (OLD.version + 1)::text);
            RETURN NULL;
        END IF;
        PERFORM pg_notify('a4c_changes', TG_ARGV[0] || ':' || NEW.id::text || ':' || NEW.version::text);
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER jobs_changed AFTER INSERT OR UPDATE OR DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION a4c_changed('job')",
    "CREATE TRIGGER workspaces_changed AFTER INSERT OR UPDATE OR DELETE ON workspaces FOR EACH ROW EXECUTE FUNCTION a4c_changed('workspace')",
]


def upgrade() -> None:
    for statement in UP:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS workspaces_changed ON workspaces")
    op.execute("DROP TRIGGER IF EXISTS jobs_changed ON jobs")
    op.execute("DROP FUNCTION IF EXISTS a4c_changed()")
