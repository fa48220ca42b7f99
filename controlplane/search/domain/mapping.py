"""The jobs index: settings, the analyzer of :mod:`analysis`, and explicit mappings.

Mappings are ``dynamic: strict``: a field nobody declared is a mapping error
(dead-lettered by the sync consumer), never a silently guessed type.

Field choices:

* filters and facets (status, kind, names, ids) are ``keyword``;
* times are ``date_nanos``: PostgreSQL keeps microseconds, and sorting and
  cursors must order two jobs created in the same millisecond the way
  PostgreSQL does;
* ``text`` is ``error || ' ' || log_tail``, analysed like ``jobs.search`` in
  PostgreSQL (an index made before stop words were kept needs ``search
  reindex`` to match it); it is indexed but left out of ``_source`` (no
  second copy of a 64 KiB log tail). ``error`` is also searchable on its
  own; ``log_tail`` is only stored;
* ``deleted`` marks a tombstone: a deleted or purged job stays in the index as
  a versioned document so that an older replayed update loses to it
  (``version_type=external``), which a real delete guarantees only for
  ``index.gc_deletes`` (60 s by default).
"""

from __future__ import annotations

import typing

from controlplane.search.domain import analysis

ANALYZER = "job_text"

KEYWORDS = (
    "id",
    "kind",
    "status",
    "source",
    "user_id",
    "user_name",
    "host_id",
    "host_name",
    "image_id",
    "image_name",
    "workspace_id",
    "workspace_name",
)
DATES = ("created_at", "updated_at", "dispatched_at", "started_at", "finished_at", "deleted_at")


def analysis_settings() -> dict[str, typing.Any]:
    return {
        "char_filter": {
            "job_sfloat": {"type": "pattern_replace", "pattern": analysis.ES_SFLOAT, "replacement": analysis.ES_SFLOAT_REPLACEMENT},
            "job_separators": {"type": "pattern_replace", "pattern": analysis.ES_SEPARATOR, "replacement": " "},
        },
        # Separators become spaces, then a whitespace split: the same tokens as
        # PostgreSQL's regexp_replace + parser. (A pattern tokenizer would say
        # it in one step; the analysis the tests' node builds has no pattern tokenizer.)
        # Tokens stay whole up to the limit; job_long then drops the long ones.
        "tokenizer": {"job_words": {"type": "whitespace", "max_token_length": 1_048_576}},
        "filter": {
            "job_long": {"type": "length", "max": analysis.MAX_TOKEN},
            # PostgreSQL stems only pure-letter words; a token with a digit is kept as is.
            "job_numwords": {"type": "keyword_marker", "keywords_pattern": ".*[0-9].*"},
            "job_stem": {"type": "stemmer", "language": "porter2"},
        },
        "analyzer": {
            ANALYZER: {
                "type": "custom",
                "char_filter": ["job_sfloat", "job_separators"],
                "tokenizer": "job_words",
                # No stop filter: phrases keep every word, as in PostgreSQL's a4c_text (migration 0004).
                "filter": ["lowercase", "job_long", "job_numwords", "job_stem"],
            }
        },
    }


def mappings() -> dict[str, typing.Any]:
    properties: dict[str, typing.Any] = {name: {"type": "keyword"} for name in KEYWORDS}
    properties.update({name: {"type": "date_nanos"} for name in DATES})
    properties.update(
        {
            "error": {"type": "text", "analyzer": ANALYZER},
            "log_tail": {"type": "text", "index": False},
            "text": {"type": "text", "analyzer": ANALYZER},
            "reason": {"type": "text", "index": False},
            "attempts": {"type": "integer"},
            "version": {"type": "long"},
            "deleted": {"type": "boolean"},
        }
    )
    return {"dynamic": "strict", "_source": {"excludes": ["text"]}, "properties": properties}


def template(alias: str, *, shards: int, replicas: int, refresh_interval: float) -> dict[str, typing.Any]:
    """Body of ``PUT _index_template/<alias>``: every ``<alias>-*`` index gets it."""
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 100,
        "template": {
            "settings": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "refresh_interval": f"{int(refresh_interval * 1000)}ms",
                "analysis": analysis_settings(),
            },
            "mappings": mappings(),
        },
        "_meta": {"managed_by": "a4c-controlplane", "description": "projection of the jobs table"},
    }


def index_name(alias: str, stamp: str) -> str:
    """A concrete index behind the alias, e.g. ``jobs-20250101t120000-ab12``."""
    return f"{alias}-{stamp}"
