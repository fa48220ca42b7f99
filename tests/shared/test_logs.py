"""The one log schema (shared/logs.py): ECS lines that validate against shared/log_schema.json, with the context bound."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
import subprocess
import sys

import jsonschema
import pytest

from shared import logs

SCHEMA = json.loads((pathlib.Path(logs.__file__).parent / "log_schema.json").read_text())


def _record(msg: str, level: int = logging.WARNING, exc_info=None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("agent.test", level, __file__, 1, msg, None, exc_info)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def _line(record: logging.LogRecord, service: str = "a4c-agent") -> dict:
    text = logs.EcsFormatter(service, host_name="node-7").format(record)
    assert "\n" not in text
    data = json.loads(text)
    jsonschema.validate(data, SCHEMA)
    return data


def test_a_record_becomes_one_ecs_line_with_its_extra_fields_under_a4c() -> None:
    data = _line(_record("command rejected", reason="bad-signature", count=2, error="a plain string"))
    assert data["message"] == "command rejected" and data["log.level"] == "warning"
    assert data["log"] == {"logger": "agent.test"} and data["service"] == {"name": "a4c-agent"} and data["host"] == {"name": "node-7"}
    assert data["@timestamp"].endswith("Z") and data["ecs.version"] == logs.ECS_VERSION
    # An extra named like an ECS object field (error) stays ours: no mapping conflict in Elasticsearch.
    assert data["a4c"] == {"reason": "bad-signature", "count": 2, "error": "a plain string"}


def test_a_scope_binds_its_fields_to_lines_inside_and_to_tasks_started_inside() -> None:
    async def main() -> tuple[dict, dict, dict]:
        with logs.scope(job_id="j1", request_id="req-12345678", workspace_id=None):
            task = asyncio.create_task(asyncio.sleep(0, result=logs.current()))
            inside = _line(_record("inside", job_id="j-extra-wins"))
        outside = _line(_record("outside"))
        return inside, outside, await task

    inside, outside, in_task = asyncio.run(main())
    assert inside["a4c"] == {"job_id": "j-extra-wins", "request_id": "req-12345678"}
    assert "a4c" not in outside
    assert in_task == {"job_id": "j1", "request_id": "req-12345678"}


def test_note_adds_to_the_innermost_scope_and_does_nothing_outside_one() -> None:
    logs.note(job_id="stray")
    assert logs.current() == {}
    with logs.scope(request_id="req-12345678"):
        with logs.scope(workspace_id="w1"):
            logs.note(job_id="j2")
            assert logs.current() == {"request_id": "req-12345678", "workspace_id": "w1", "job_id": "j2"}
        assert logs.current() == {"request_id": "req-12345678"}


def test_a_field_given_as_none_is_left_out_rather_than_written_null() -> None:
    with logs.scope(request_id="req-12345678"):
        data = _line(_record("command queued", job_id=None, error=None, kind="host.cleanup"))
    assert data["a4c"] == {"request_id": "req-12345678", "kind": "host.cleanup"}


def test_exceptions_become_the_ecs_error_object() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        data = _line(_record("crashed", logging.ERROR, exc_info=sys.exc_info()))
    assert data["error"]["type"] == "ValueError" and data["error"]["message"] == "boom"
    assert "ValueError: boom" in data["error"]["stack_trace"]


def test_secrets_are_never_written() -> None:
    with logs.scope(token="a4c_live_secret"):
        data = _line(_record("enrolled", signing_key="k3y", password="hunter2", detail={"api_key": "abc", "name": "n"}))
    text = json.dumps(data)
    assert "a4c_live_secret" not in text and "k3y" not in text and "hunter2" not in text and "abc" not in text
    assert data["a4c"]["signing_key"] == logs.REDACTED and data["a4c"]["detail"] == {"api_key": logs.REDACTED, "name": "n"}


def test_values_json_cannot_encode_are_written_as_text() -> None:
    assert _line(_record("x", where=object))["a4c"]["where"] == "<class 'object'>"


def test_a_well_formed_request_id_is_kept_and_anything_else_replaced() -> None:
    assert logs.request_id_from("ci-run-4711.step-2") == "ci-run-4711.step-2"
    for bad in (None, "", "short", "has space in it", "new\nline-injected", "x" * 129, '{"json":1}'):
        fresh = logs.request_id_from(bad)
        assert fresh != bad and logs.valid_request_id(fresh)


@pytest.mark.parametrize("earlier_setup_left_behind", [False, True])
def test_after_setup_every_line_on_stderr_is_ecs_json_warnings_included(capsys, earlier_setup_left_behind) -> None:
    import warnings

    from shared import settings as common

    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    if earlier_setup_left_behind:
        # What an in-process CLI test (CliRunner) leaves: logging capturing, but warnings.showwarning put back
        # by the catch_warnings that pytest wraps around each test. Seen as an order-dependent failure.
        with warnings.catch_warnings():
            logging.captureWarnings(True)
    try:
        logs.setup(common.LoggingSettings(format="json", level="INFO"), service="a4c-controlplane", host_name="cp-1")
        logging.getLogger("controlplane.test").info("hello", extra={"job_id": "j4"})
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    finally:
        root.handlers[:], _ = before
        root.setLevel(before[1])
        logging.captureWarnings(False)
    lines = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    assert [(x["log"]["logger"], x["service"]["name"]) for x in lines] == [
        ("controlplane.test", "a4c-controlplane"),
        ("py.warnings", "a4c-controlplane"),
    ]
    assert lines[0]["a4c"] == {"job_id": "j4"} and "an old API" in lines[1]["message"]


def test_the_text_format_shows_the_fields_as_key_value() -> None:
    with logs.scope(job_id="j3"):
        line = logs.TextFormatter().format(_record("command done", ok=True))
    assert line.endswith("agent.test: command done job_id=j3 ok=True")


def test_fresh_request_ids_are_well_formed_and_never_repeat_in_a_process_a_forked_child_or_another_process() -> None:
    here = [logs.new_request_id() for _ in range(1000)]
    assert len(set(here)) == 1000 and all(logs.valid_request_id(i) for i in here)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child draws its own ids, as a forked worker would
        os.write(write, " ".join(logs.new_request_id() for _ in range(1000)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        forked = pipe.read().split()
    os.waitpid(child, 0)
    code = "from shared import logs; print(' '.join(logs.new_request_id() for _ in range(1000)))"
    restarted = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert len(forked) == len(restarted) == 1000
    assert len(set(here) | set(forked) | set(restarted)) == 3000
