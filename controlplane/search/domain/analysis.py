"""How error text becomes searchable terms, the same way on both backends.

The contract (one query language, two backends, tested against each other) is that a query returns the same jobs
from Elasticsearch and from PostgreSQL, so the two analyzers are built to agree
rather than each left at its defaults (whose tokenizers, stop lists and
stemmers all differ):

* **Tokens** are maximal runs of letters and digits; every other character
  separates. PostgreSQL's generated ``jobs.search`` column first replaces each
  run of ``[^[:alnum:]]`` by a space (so its parser sees plain words, never its
  file/URL/version token types); Elasticsearch does the same with a
  ``pattern_replace`` char filter on ``[^\\p{L}\\p{N}]+`` and a whitespace
  tokenizer.
* One quirk of PostgreSQL's parser is reproduced rather than removed: a token
  that starts like a number in scientific notation and goes on with letters
  (the hash ``83e6230fb77a``) is two tokens there (``83e6230`` and ``fb77a``),
  so Elasticsearch splits it the same way with a ``pattern_replace`` char
  filter (:data:`ES_SFLOAT`).
* **Lower-cased**, and **no stop words** removed: every word counts, so a
  phrase like ``"no such host"`` or ``"is not a directory"`` means all of its
  words (PostgreSQL's ``english`` configuration would keep only ``host``, which
  matches every build log mentioning ``a4c.host``). PostgreSQL uses
  ``a4c_text``, ``english`` with a stemmer that has no stop-word list
  (migration 0004); Elasticsearch has no stop filter.
* **Stemmed** with Snowball English (Porter2): PostgreSQL's ``english_stem``,
  Elasticsearch's ``stemmer`` with ``language: porter2``. Tokens containing a
  digit are not stemmed (PostgreSQL files them as ``numword``, Elasticsearch
  marks them as keywords), and tokens over :data:`MAX_TOKEN` characters are
  dropped on both (PostgreSQL cannot index them).

Query semantics of ``q`` (the parser's ``Query.text``, one literal term each;
:func:`clauses` prepares them):

* every term must occur (AND), in the error text and the log tail taken as
  one text (``error || ' ' || log_tail``, as the PostgreSQL column is defined);
* a term matches as a phrase: its tokens consecutively, in order
  (``phraseto_tsquery`` / ``match_phrase``). A one-word term is just that word;
  ``"no space left"`` or a bare ``/var/lib/docker`` must appear as written
  (up to case, stemming and punctuation);
* a term without any token (``"--"``) is ignored, on both backends
  (PostgreSQL would otherwise match nothing at all).

Known divergence: PostgreSQL stores at most 16383 positions per document, so a
phrase that only occurs beyond the ~16,000th word of a very long log tail is
found by Elasticsearch alone.
"""

from __future__ import annotations

import re
import typing

MAX_TOKEN = 2047

# The separator both sides use: PostgreSQL as a POSIX class, Elasticsearch as
# Unicode properties, Python (to spot clauses without tokens) as \w minus "_".
PG_SEPARATOR = "[^[:alnum:]]+"
ES_SEPARATOR = r"[^\p{L}\p{N}]+"
_WORD = re.compile(r"[^\W_]+")
# PostgreSQL reads "<digits>e<digits>" at the start of a token as a float and
# ends the token there when a letter follows; no lookbehind (not every regex
# engine has it), so the separator before is captured and put back.
ES_SFLOAT = r"(^|[^\p{L}\p{N}])([0-9]+[eE][0-9]+)(\p{L})"
ES_SFLOAT_REPLACEMENT = "$1$2 $3"


def tokens(text: str) -> list[str]:
    """The lower-cased tokens of ``text`` before stemming."""
    return [t.lower() for t in _WORD.findall(text)]


def meaningful(text: str) -> bool:
    """Whether ``text`` has at least one token both backends index (not over :data:`MAX_TOKEN`)."""
    return any(len(t) <= MAX_TOKEN for t in tokens(text))


def clauses(terms: typing.Iterable[str]) -> tuple[str, ...]:
    """The terms both backends run as phrases: those with at least one indexed token."""
    return tuple(t for t in terms if meaningful(t))
