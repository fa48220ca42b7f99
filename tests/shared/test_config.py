"""Settings load from YAML plus A4C_ overrides, and a bad value stops startup with one line naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent import settings as agent_settings
from controlplane import settings as cp_settings
from shared import config


def _error(loader, *args, **kwargs) -> str:
    with pytest.raises(config.ConfigError) as info:
        loader(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "the error is one line"
    return message


def test_no_configuration_at_all_gives_working_defaults():
    settings = cp_settings.load(environ={})
    assert settings.http.port == 8080
    assert settings.search.elasticsearch_url is None, "search is served by PostgreSQL by default"
    assert agent_settings.load(environ={}).docker.publish_address == "0.0.0.0"


def test_yaml_values_are_read_and_environment_overrides_win(tmp_path):
    path = tmp_path / "cp.yaml"
    path.write_text("http:\n  port: 9000\n  host: 0.0.0.0\nkafka:\n  bootstrap_servers: [a:9092]\n")
    settings = cp_settings.load(path, environ={"A4C_HTTP__PORT": "9100", "A4C_KAFKA__BOOTSTRAP_SERVERS": "[b:1, c:2]"})
    assert settings.http.port == 9100
    assert settings.http.host == "0.0.0.0"
    assert settings.kafka.bootstrap_servers == ["b:1", "c:2"]


def test_a_bad_url_names_the_key_and_the_expected_form():
    message = _error(cp_settings.load, environ={"A4C_DATABASE__URL": "mysql://db/a4c"})
    assert message.startswith("config error: database.url: expected a URL starting with postgresql://")
    message = _error(agent_settings.load, environ={"A4C_AGENT__CONTROL_PLANE_URL": "cp.example:8080"})
    assert "agent.control_plane_url" in message and "http://" in message


def test_a_negative_interval_names_the_key():
    message = _error(agent_settings.load, environ={"A4C_REPORTING__HEARTBEAT_INTERVAL": "-5"})
    assert message == "config error: reporting.heartbeat_interval: Input should be greater than 0 (got -5)"


def test_an_unknown_key_is_an_error_not_silently_ignored(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text("cleanup:\n  high_watermrk: 90\n")
    message = _error(agent_settings.load, path, environ={})
    assert message.startswith("config error: cleanup.high_watermrk: unknown key")
    message = _error(cp_settings.load, environ={"A4C_NOSUCH__THING": "1"})
    assert "nosuch" in message and "unknown key" in message


def test_a_wrong_type_names_the_key_and_shows_the_value():
    message = _error(cp_settings.load, environ={"A4C_HTTP__PORT": "eighty"})
    assert message.startswith("config error: http.port: Input should be a valid integer") and "'eighty'" in message


def test_a_cross_field_rule_is_explained():
    message = _error(agent_settings.load, environ={"A4C_CLEANUP__LOW_WATERMARK": "90", "A4C_CLEANUP__HIGH_WATERMARK": "80"})
    assert message.startswith("config error: cleanup: low_watermark must be below high_watermark")


def test_an_unreadable_or_malformed_file_is_one_line(tmp_path):
    assert "cannot read" in _error(cp_settings.load, tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("http: [unclosed\n")
    assert "not valid YAML at line" in _error(cp_settings.load, bad, environ={})
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    assert "top level must be a mapping" in _error(cp_settings.load, top, environ={})


@pytest.mark.parametrize("script", ["a4c-controlplane", "a4c-agent"])
def test_a_daemon_with_a_bad_setting_exits_2_with_one_line_and_no_traceback(tmp_path, script):
    path = tmp_path / "bad.yaml"
    path.write_text("logging:\n  level: LOUD\n")
    exe = str(__import__("pathlib").Path(sys.executable).with_name(script))
    command = "migrate" if script == "a4c-controlplane" else "run"
    proc = subprocess.run([exe, command, "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "config error: logging.level:" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
