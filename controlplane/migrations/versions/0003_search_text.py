"""search text: jobs.search tokenizes like the Elasticsearch analyzer (runs of letters and digits)

PostgreSQL's text-search parser recognises file paths, URLs, versions and
hyphenated words as tokens of their own ("/var/lib/docker" is one lexeme),
which no Elasticsearch tokenizer reproduces. Replacing every run of
non-alphanumeric characters by a space first leaves it plain words only, which
the ``job_text`` analyzer (controlplane/search/domain/analysis.py) splits the
same way, so ``q`` finds the same jobs on both backends.

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

TEXT = "coalesce(error, '') || ' ' || coalesce(log_tail, '')"
NEW = f"to_tsvector('english'::regconfig, regexp_replace({TEXT}, '[^[:alnum:]]+', ' ', 'g'))"
OLD = f"to_tsvector('english'::regconfig, {TEXT})"


def _replace(expression: str) -> None:
    op.drop_index("jobs_search", table_name="jobs", postgresql_using="gin")
    op.drop_column("jobs", "search")
    op.add_column("jobs", sa.Column("search", postgresql.TSVECTOR(), sa.Computed(expression, persisted=True), nullable=False))
    op.create_index("jobs_search", "jobs", ["search"], unique=False, postgresql_using="gin")


def upgrade() -> None:
    _replace(NEW)


def downgrade() -> None:
    _replace(OLD)
