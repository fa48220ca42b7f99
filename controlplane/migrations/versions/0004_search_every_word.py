"""search every word: no stop words in jobs.search, and the text query built from one array parameter

1. ``a4c_text``, a copy of the ``english`` text search configuration whose
   Snowball stemmer has no stop-word list: a phrase keeps every word, so
   ``"no such host"`` no longer shrinks to ``host``. Elasticsearch's
   ``job_text`` analyzer drops its stop filter to match
   (controlplane/search/domain/mapping.py).
2. ``a4c_text_query(text[])``: the AND of one phrase query per term, built in
   the database from a single array parameter, so a search has the same SQL
   text whatever its number of terms (controlplane/search/postgres.py).
   It is IMMUTABLE so that, with the search's custom plans, the planner folds
   it to a constant tsquery and uses the GIN index and its statistics; it
   names ``a4c_text``, which this migration owns and nothing renames.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TEXT = "regexp_replace(coalesce(error, '') || ' ' || coalesce(log_tail, ''), '[^[:alnum:]]+', ' ', 'g')"
NEW = f"to_tsvector('a4c_text'::regconfig, {TEXT})"
OLD = f"to_tsvector('english'::regconfig, {TEXT})"

CREATE = [
    "CREATE TEXT SEARCH DICTIONARY a4c_english_stem (TEMPLATE = snowball, LANGUAGE = english)",
    "CREATE TEXT SEARCH CONFIGURATION a4c_text (COPY = english)",
    "ALTER TEXT SEARCH CONFIGURATION a4c_text ALTER MAPPING REPLACE english_stem WITH a4c_english_stem",
    # tsquery_and is the function behind tsquery && tsquery.
    "CREATE AGGREGATE a4c_tsquery_and(tsquery) (SFUNC = tsquery_and, STYPE = tsquery)",
    """
    CREATE FUNCTION a4c_text_query(terms text[]) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT a4c_tsquery_and(phraseto_tsquery('a4c_text', regexp_replace(term, '[^[:alnum:]]+', ' ', 'g')) ORDER BY n)
        FROM unnest(terms) WITH ORDINALITY AS t(term, n)
    $$
    """,
]
DROP = [
    "DROP FUNCTION a4c_text_query(text[])",
    "DROP AGGREGATE a4c_tsquery_and(tsquery)",
    "DROP TEXT SEARCH CONFIGURATION a4c_text",
    "DROP TEXT SEARCH DICTIONARY a4c_english_stem",
]


def _replace(expression: str) -> None:
    op.drop_index("jobs_search", table_name="jobs", postgresql_using="gin")
    op.drop_column("jobs", "search")
    op.add_column("jobs", sa.Column("search", postgresql.TSVECTOR(), sa.Computed(expression, persisted=True), nullable=False))
    op.create_index("jobs_search", "jobs", ["search"], unique=False, postgresql_using="gin")


def upgrade() -> None:
    for statement in CREATE:
        op.execute(statement)
    _replace(NEW)


def downgrade() -> None:
    _replace(OLD)
    for statement in DROP:
        op.execute(statement)
