"""The sync and search commands refuse to start without an Elasticsearch URL, in one line naming the setting."""

from __future__ import annotations

import pytest
from click import testing

from controlplane import cli


@pytest.mark.parametrize("argv", [["sync"], ["search", "reindex"], ["search", "check"], ["search", "check", "--repair"]])
def test_without_an_elasticsearch_url_the_command_exits_2_naming_the_setting(argv, monkeypatch):
    monkeypatch.delenv("A4C_SEARCH__ELASTICSEARCH_URL", raising=False)
    result = testing.CliRunner().invoke(cli.main, argv, env={"A4C_CONFIG": ""})
    assert result.exit_code == 2
    assert "search.elasticsearch_url" in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_an_unreachable_elasticsearch_is_one_error_line_and_exit_1(monkeypatch, database_url):
    env = {"A4C_CONFIG": "", "A4C_SEARCH__ELASTICSEARCH_URL": "http://127.0.0.1:9", "A4C_DATABASE__URL": database_url, "A4C_LOGGING__LEVEL": "ERROR"}
    result = testing.CliRunner().invoke(cli.main, ["search", "check"], env=env)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "search.elasticsearch_url" in errors[0]
