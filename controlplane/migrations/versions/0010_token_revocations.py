"""token revocations reach every control plane at once (issue 18 item 1)

A token revoked, expired early or deleted, and a user disabled, re-roled or
deleted, NOTIFY ``a4c_tokens`` at commit with ``token:<id>`` or
``user:<id>``; every API instance LISTENs and forgets what it cached for it
(controlplane/api/revocations.py). ``auth.cache_ttl`` stays the bound when a
notification is missed.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UP = [
    """
    CREATE FUNCTION a4c_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('a4c_tokens', TG_ARGV[0] || ':' || OLD.id::text);
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER api_tokens_changed AFTER UPDATE OF revoked_at, expires_at OR DELETE ON api_tokens"
    " FOR EACH ROW EXECUTE FUNCTION a4c_token_changed('token')",
    "CREATE TRIGGER users_changed AFTER UPDATE OF disabled, role OR DELETE ON users FOR EACH ROW EXECUTE FUNCTION a4c_token_changed('user')",
]


def upgrade() -> None:
    for statement in UP:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS users_changed ON users")
    op.execute("DROP TRIGGER IF EXISTS api_tokens_changed ON api_tokens")
    op.execute("DROP FUNCTION IF EXISTS a4c_token_changed()")
