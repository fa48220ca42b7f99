"""Why a record could not be handled, and what a consumer does about it: retry, or dead-letter and move on.

One pure decision for every consumer (:mod:`shared.consuming`), from the
exception alone (its class names and PostgreSQL SQLSTATE, along the chain of
wrapped causes), so no I/O library is imported here:

* infrastructure (the connection, the database or the broker is unavailable,
  a timeout, a serialization failure or deadlock): retried with backoff until
  it succeeds: dead-lettering everything during an outage would lose work;
* data (a constraint, an encoding PostgreSQL refuses such as NUL, a value out
  of range or too long, a validation or decoding error, :class:`Poison`):
  the same record fails the same way every time, so it is dead-lettered at once;
* anything else: retried a few times (it may be transient), then dead-lettered
  as ``unexpected``, so even a bug cannot stall a partition for good.
"""

from __future__ import annotations

import dataclasses
import typing

UNEXPECTED_ATTEMPTS = 5


class Poison(Exception):
    """Raised by a handler: this record can never be applied (``cause`` is a metric label)."""

    def __init__(self, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause


@dataclasses.dataclass(frozen=True)
class Verdict:
    cause: str
    attempts: int | None
    """Tries in all before dead-lettering; None: until it succeeds (infrastructure)."""

    @property
    def dead_letter_now(self) -> bool:
        return self.attempts == 1


def retry(cause: str) -> Verdict:
    return Verdict(cause, None)


def dead(cause: str) -> Verdict:
    return Verdict(cause, 1)


# SQLSTATE classes and codes (PostgreSQL, Appendix A "Error Codes").
_RETRY_CLASSES = {
    "08": "connection",
    "53": "database_unavailable",
    "57": "database_unavailable",
    "58": "database_unavailable",
    "40": "conflict",
    "XX": "database_unavailable",
}
_RETRY_CODES = {"55P03": "conflict", "55006": "conflict", "25006": "database_unavailable", "57014": "timeout"}
_DATA_CODES = {"22021": "encoding", "22P05": "encoding", "22001": "too_long", "54000": "oversized", "54001": "oversized"}
_DATA_CLASSES = {"22": "data", "23": "constraint", "54": "oversized", "P0": "data"}

# Exception class names (anywhere in the MRO of anything in the chain), most specific first.
_RETRY_NAMES = (
    ("TimeoutError", "timeout"),  # builtins (= asyncio's), sqlalchemy's pool timeout
    ("ConnectionError", "connection"),
    ("PostgresConnectionError", "connection"),
    ("InterfaceError", "connection"),  # asyncpg/sqlalchemy: "connection is closed"
    ("DisconnectionError", "connection"),
    ("OperationalError", "database_unavailable"),
    ("OSError", "connection"),
    ("KafkaError", "broker_unavailable"),
    ("KafkaUnavailable", "broker_unavailable"),
)
_DATA_NAMES = (
    ("ValidationError", "invalid"),  # pydantic
    ("JSONDecodeError", "undecodable"),
    ("UnicodeDecodeError", "undecodable"),
    ("UnicodeError", "encoding"),  # a lone surrogate cannot be encoded as UTF-8
    ("RecursionError", "undecodable"),  # JSON nested deeper than the parser goes
    ("IntegrityError", "constraint"),
    ("DataError", "data"),
    ("ValueError", "invalid"),
    ("TypeError", "invalid"),
    ("LookupError", "invalid"),
    ("AttributeError", "invalid"),
    ("ArithmeticError", "invalid"),
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: SQLAlchemy's ``.orig``, ``__cause__``, ``__context__`` (each once)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend([getattr(current, "orig", None), current.__cause__, current.__context__])
    return seen


def _sqlstate(chain: typing.Sequence[BaseException]) -> str | None:
    for exc in chain:
        for attribute in ("sqlstate", "pgcode"):
            code = getattr(exc, attribute, None)
            if isinstance(code, str) and len(code) == 5:
                return code.upper()
    return None


def classify(exc: BaseException) -> Verdict:
    """What to do about ``exc`` raised while handling one record (or one batch)."""
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, Poison):
            return dead(item.cause)
    code = _sqlstate(chain)
    if code is not None:
        found = _RETRY_CODES.get(code) or _RETRY_CLASSES.get(code[:2])
        if found:
            return retry(found)
        found = _DATA_CODES.get(code) or _DATA_CLASSES.get(code[:2])
        if found:
            return dead(found)
        # Any other answer of the database (a programming error, say): not this record's fault, maybe.
        return Verdict("unexpected", UNEXPECTED_ATTEMPTS)
    # The outermost exception that says anything decides (a wrapper's context may be an old, unrelated error).
    for item in chain:
        names = {cls.__name__ for cls in type(item).__mro__}
        for table, make in ((_DATA_NAMES, dead), (_RETRY_NAMES, retry)):
            for name, cause in table:
                if name in names:
                    return make(cause)
    return Verdict("unexpected", UNEXPECTED_ATTEMPTS)


def describe(exc: BaseException, limit: int = 2000) -> str:
    """The reason written into a dead letter: the exception's type and message, bounded."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:limit]
