"""Structured logs: one JSON object per line, extra fields at the top level."""

from __future__ import annotations

import json
import logging

from agent import logs


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("agent.test", logging.WARNING, __file__, 1, msg, None, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_a_record_becomes_one_json_line_with_its_extra_fields() -> None:
    line = logs.JsonFormatter().format(_record("command rejected", reason="bad-signature", count=2))
    assert "\n" not in line
    data = json.loads(line)
    assert data["msg"] == "command rejected" and data["level"] == "WARNING" and data["logger"] == "agent.test"
    assert data["reason"] == "bad-signature" and data["count"] == 2
    assert data["ts"].endswith("+00:00")


def test_exceptions_are_kept_in_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("a", logging.ERROR, __file__, 1, "crashed", None, sys.exc_info())
    data = json.loads(logs.JsonFormatter().format(record))
    assert "ValueError: boom" in data["exc"]


def test_values_json_cannot_encode_are_written_as_text() -> None:
    data = json.loads(logs.JsonFormatter().format(_record("x", where=object)))
    assert data["where"] == "<class 'object'>"
