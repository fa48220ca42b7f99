"""Pure logic of failure handling: which failures a consumer retries and which it dead-letters, the one string cleaner, and stall bookkeeping."""

from __future__ import annotations

import json

import aiokafka.errors
import asyncpg.exceptions as pg
import pydantic
import pytest
import sqlalchemy as sa

from shared import consuming
from shared.domain import failures, text


def _wrapped(orig: BaseException, kind: type[sa.exc.DBAPIError] = sa.exc.DBAPIError) -> sa.exc.DBAPIError:
    """How SQLAlchemy hands an asyncpg error to the handler."""
    return kind("UPDATE jobs SET log_tail = ...", {}, orig)


def _validation_error() -> pydantic.ValidationError:
    class M(pydantic.BaseModel):
        n: int

    try:
        M.model_validate({"n": "x"})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


def _json_error() -> json.JSONDecodeError:
    try:
        json.loads(b"{not json")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("unreachable")


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


RETRY = None
DEAD = 1
MAYBE = failures.UNEXPECTED_ATTEMPTS

TABLE = [
    # the NUL build: text and jsonb refuse it
    ("NUL in text", _wrapped(pg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00')), "encoding", DEAD),
    ("\\u0000 in jsonb", _wrapped(pg.UntranslatableCharacterError("unsupported Unicode escape sequence")), "encoding", DEAD),
    ("lone surrogate", UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), "encoding", DEAD),
    ("too long for the column", _wrapped(pg.StringDataRightTruncationError("value too long for type character varying(80)")), "too_long", DEAD),
    ("timestamp out of range", _wrapped(pg.DatetimeFieldOverflowError("timestamp out of range")), "data", DEAD),
    ("check constraint", _wrapped(pg.CheckViolationError("jobs_log_tail_bounded"), sa.exc.IntegrityError), "constraint", DEAD),
    ("unique violation", _wrapped(pg.UniqueViolationError("duplicate key"), sa.exc.IntegrityError), "constraint", DEAD),
    ("index row too big", _wrapped(pg.ProgramLimitExceededError("index row size exceeds maximum")), "oversized", DEAD),
    ("pydantic", _validation_error(), "invalid", DEAD),
    ("not JSON", _json_error(), "undecodable", DEAD),
    ("JSON nested too deep", RecursionError("maximum recursion depth exceeded while decoding a JSON array"), "undecodable", DEAD),
    ("a handler says so", failures.Poison("rejected", "no registered image named 'x'"), "rejected", DEAD),
    ("poison under a wrapper", _chained(RuntimeError("while handling"), failures.Poison("invalid", "git_ref")), "invalid", DEAD),
    ("a plain bug", KeyError("job_id"), "invalid", DEAD),
    # infrastructure: retried until it works
    ("connection lost", _wrapped(pg.ConnectionDoesNotExistError("connection was closed in the middle of operation")), "connection", RETRY),
    ("connection refused", ConnectionRefusedError(111, "Connection refused"), "connection", RETRY),
    ("closed connection", _wrapped(pg.InterfaceError("connection is closed"), sa.exc.InterfaceError), "connection", RETRY),
    ("too many connections", _wrapped(pg.TooManyConnectionsError("sorry, too many clients already")), "database_unavailable", RETRY),
    ("database starting up", _wrapped(pg.CannotConnectNowError("the database system is starting up")), "database_unavailable", RETRY),
    ("admin shutdown", _wrapped(pg.AdminShutdownError("terminating connection due to administrator command")), "database_unavailable", RETRY),
    ("statement timeout", _wrapped(pg.QueryCanceledError("canceling statement due to statement timeout")), "timeout", RETRY),
    ("serialization failure", _wrapped(pg.SerializationError("could not serialize access")), "conflict", RETRY),
    ("deadlock", _wrapped(pg.DeadlockDetectedError("deadlock detected")), "conflict", RETRY),
    ("lock not available", _wrapped(pg.LockNotAvailableError("could not obtain lock")), "conflict", RETRY),
    ("pool exhausted", sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), "timeout", RETRY),
    ("asyncio timeout", TimeoutError(), "timeout", RETRY),
    ("broker", aiokafka.errors.KafkaConnectionError("no broker"), "broker_unavailable", RETRY),
    # neither: a few tries, then dead-lettered
    ("undefined column (a bad deploy?)", _wrapped(pg.UndefinedColumnError('column "x" does not exist')), "unexpected", MAYBE),
    ("something else", RuntimeError("who knows"), "unexpected", MAYBE),
]


@pytest.mark.parametrize(("error", "cause", "attempts"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_each_failure_is_retried_or_dead_lettered_by_what_it_is(error, cause, attempts):
    assert failures.classify(error) == failures.Verdict(cause, attempts)


def test_a_dead_letter_reason_names_the_error_and_is_bounded():
    assert failures.describe(failures.Poison("invalid", "git_ref: String should match pattern")) == "Poison: git_ref: String should match pattern"
    assert failures.describe(TimeoutError()) == "TimeoutError"
    assert len(failures.describe(ValueError("x" * 10_000))) == 2000


@pytest.mark.parametrize(
    ("value", "limit", "keep", "cleaned"),
    [
        ("before\x00after\n", None, "head", "before\ufffdafter\n"),
        ("lone \ud800 and \udfff", None, "head", "lone \ufffd and \ufffd"),
        ("\U0001f600 emoji stays", None, "head", "\U0001f600 emoji stays"),
        ("tab\tand newline\n stay", None, "head", "tab\tand newline\n stay"),
        ("abcdef", 3, "head", "abc"),
        ("abcdef", 3, "tail", "def"),
        ("a\x00" * 3, 4, "tail", "a\ufffda\ufffd"),
    ],
)
def test_clean_replaces_what_postgresql_cannot_store_and_caps_the_length(value, limit, keep, cleaned):
    assert text.clean(value, limit, keep=keep) == cleaned


def test_clean_tree_cleans_every_string_of_a_json_document_keys_included():
    assert text.clean_tree({"a\x00": ["x\x00", 1, None, {"k": "\ud800"}], "n": 1.5}) == {"a\ufffd": ["x\ufffd", 1, None, {"k": "\ufffd"}], "n": 1.5}
    assert text.clean_optional(None) is None


def test_progress_counts_a_stall_only_while_records_wait_without_a_commit():
    now = [100.0]
    progress = consuming.Progress("events", clock=lambda: now[0])
    now[0] = 500.0
    assert progress.stalled_for() == 0.0, "idle for long is not stalled"
    progress.fetched(12)
    now[0] = 530.0
    assert (progress.waiting, progress.stalled_for()) == (12, 30.0), "the clock starts when records start waiting"
    progress.fetched(15)  # a consumer restarted by its supervisor fetches the same records again: no reset
    now[0] = 570.0
    assert progress.stalled_for() == 70.0
    progress.committed(3)
    assert (progress.waiting, progress.stalled_for()) == (3, 0.0)
    progress.idle()
    now[0] = 1000.0
    assert progress.stalled_for() == 0.0
