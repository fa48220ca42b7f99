"""Elasticsearch's job_text analyzer and PostgreSQL's jobs.search column turn text into the same terms."""

from __future__ import annotations

import random

import asyncpg

from controlplane.search import index
from controlplane.search.domain import analysis
from tests.harness import jobgen

EDGE_CASES = [
    "No space left on device: write /var/lib/docker/overlay2/ab12/diff: errno 28",
    "it's the builder's fault; can't connect to 127.0.0.1:5432 (connection refused)",
    "running generously connections relational conditional agreed feed",
    "foo_bar baz-qux v1.2.3 0x1f 1e5 abc123s OOMKilled npm ERR! E:",
    "Café naïve résumé 日本語 Straße",
    "the of and to be or not to be",
    "dial tcp: lookup registry.internal: no such host; mkdir /a: is not a directory; 404 not found",
    "I was doing this because it does what he has, and she is being very own-ish",
    "layer 83e6230fb77a 9e9e9 1e5x 12E3ab x1e5y 007e12ab",
    "",
]


def _corpus() -> list[str]:
    rng = random.Random(7)
    texts = list(EDGE_CASES)
    for row in jobgen.jobs(60, seed=3):
        error, log_tail = row[jobgen.COLUMNS.index("error")], row[jobgen.COLUMNS.index("log_tail")]
        texts.append(f"{error or ''} {log_tail}")
    texts.append(" ".join(rng.sample(jobgen.ERRORS, 5)))
    return texts


async def test_both_backends_derive_the_same_terms_at_the_same_positions(settings, es, database_url):
    await index.ensure(es, settings.search)
    conn = await asyncpg.connect(database_url)
    try:
        for text in _corpus():
            analysed = await es.indices.analyze(index=settings.search.index_alias, analyzer="job_text", text=text)
            es_terms = sorted((t["token"], t["position"] + 1) for t in analysed["tokens"])
            vector = await conn.fetchval("SELECT to_tsvector('a4c_text', regexp_replace($1::text, '[^[:alnum:]]+', ' ', 'g'))::text", text)
            pg_terms = sorted(_positions(vector))
            assert es_terms == pg_terms, text
    finally:
        await conn.close()


def _positions(vector: str) -> list[tuple[str, int]]:
    """``'devic':5 'space':2,9`` -> [("devic", 5), ("space", 2), ("space", 9)]."""
    out = []
    for entry in vector.split(" ") if vector else []:
        lexeme, _, positions = entry.rpartition(":")
        for p in positions.split(","):
            out.append((lexeme.strip("'"), int(p)))
    return out


def test_every_term_with_a_word_is_a_clause_stop_words_included():
    assert analysis.clauses(["the", "no space left", "to be", "--", "exit code 137", "x" * 2048]) == (
        "the",
        "no space left",
        "to be",
        "exit code 137",
    )
    assert analysis.clauses(["...", " / "]) == ()
