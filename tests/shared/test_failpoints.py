"""Fail points are armed only by A4C_FAILPOINTS, do nothing by default, and a malformed value is a one-line error naming the variable."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from shared import failpoints

POINT = "relay.after_publish"


def _error(spec: str) -> str:
    with pytest.raises(failpoints.FailpointError) as info:
        failpoints.parse(spec)
    message = str(info.value)
    assert "\n" not in message, "the error is one line"
    assert message.startswith(f"{failpoints.ENV_VAR}="), "the error names the variable an operator has to fix"
    return message


def test_an_unset_or_blank_variable_arms_nothing():
    assert failpoints.parse("") == {}
    assert failpoints.parse("  ;  ") == {}
    assert failpoints.Failpoints.from_environ({}).armed == {}


def test_a_term_arms_its_point_with_its_action_ignoring_blanks_and_a_trailing_separator():
    assert failpoints.parse(f"{POINT}=exit") == {POINT: "exit"}
    assert failpoints.parse(f"  {POINT} = raise ; ") == {POINT: "raise"}


def test_a_term_without_an_equals_sign_or_an_action_is_rejected():
    assert "'relay.after_publish' is not name=action" in _error(POINT)
    assert "is not name=action" in _error(f"{POINT}=")
    assert "is not name=action" in _error("=exit")


def test_an_unknown_action_is_rejected_and_the_known_ones_are_listed():
    message = _error(f"{POINT}=sleep(100)")
    assert "unknown action 'sleep(100)'" in message and "exit, raise" in message


def test_a_misspelt_point_is_rejected_rather_than_never_firing():
    message = _error("relay.after_publsh=exit")
    assert "unknown fail point 'relay.after_publsh'" in message and POINT in message


def test_a_name_that_is_not_dotted_lower_case_words_is_rejected():
    assert "is not a fail point name" in _error("Relay After=exit")


def test_a_point_given_twice_is_rejected():
    assert f"{POINT} is given twice" in _error(f"{POINT}=exit;{POINT}=raise")


def test_every_known_point_says_where_it_is_and_what_it_simulates():
    for name, description in failpoints.POINTS.items():
        assert failpoints._NAME.fullmatch(name), name
        assert ".py" in description, f"{name}: say which file holds it"


def test_hitting_a_point_that_is_not_armed_does_nothing():
    failpoints.Failpoints().hit(POINT)
    failpoints.Failpoints({POINT: "raise"}).hit("some.other_point")


def test_a_point_armed_with_raise_raises_where_it_is_hit():
    with pytest.raises(failpoints.FailpointTriggered) as info:
        failpoints.Failpoints.from_environ({failpoints.ENV_VAR: f"{POINT}=raise"}).hit(POINT)
    assert info.value.name == POINT


def _python(code: str, value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, failpoints.ENV_VAR: value}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_a_point_armed_with_exit_logs_its_name_and_exits_with_the_distinctive_status():
    # A separate interpreter: the variable is read once, at import, and exit ends the process.
    proc = _python(f"from shared import failpoints; failpoints.hit({POINT!r}); print('survived')", f"{POINT}=exit")
    assert proc.returncode == failpoints.EXIT_CODE, proc.stderr
    assert f"failpoint {POINT} triggered" in proc.stderr
    assert "survived" not in proc.stdout


def test_a_malformed_variable_stops_the_import_with_the_one_line_error():
    proc = _python("import shared.failpoints", f"{POINT}=explode")
    assert proc.returncode != 0
    assert f"FailpointError: {failpoints.ENV_VAR}='{POINT}=explode': unknown action 'explode'" in proc.stderr


def test_the_control_plane_started_with_a_malformed_variable_exits_2_with_one_line_and_no_traceback(tmp_path):
    # Exit 2 is the configuration-error status systemd's unit does not restart
    # (RestartPreventExitStatus): a typo must not crash-loop the service.
    config = tmp_path / "cp.yaml"
    config.write_text("{}\n")
    exe = str(pathlib.Path(sys.executable).with_name("a4c-controlplane"))
    env = {**os.environ, failpoints.ENV_VAR: "relay.after_publsh=exit"}
    proc = subprocess.run([exe, "run", "--config", str(config)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and failpoints.ENV_VAR in lines[0] and "unknown fail point 'relay.after_publsh'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
