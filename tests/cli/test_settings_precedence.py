"""Where the server and token come from: flag, else environment, else the saved file; empty counts as unset."""

from __future__ import annotations

import pathlib

import pytest

from a4c import config, errors

FILE = pathlib.Path("/home/u/.config/a4c/config.yaml")


def _server(flag, env, saved):
    return config.resolve(flag, "--server", env, "A4C_SERVER", saved, "server", FILE)


def test_the_flag_wins_then_the_environment_then_the_file():
    saved = {"server": "http://file"}
    assert _server("http://flag", {"A4C_SERVER": "http://env"}, saved) == config.Setting("http://flag", "--server")
    assert _server(None, {"A4C_SERVER": "http://env"}, saved) == config.Setting("http://env", "A4C_SERVER")
    assert _server(None, {}, saved) == config.Setting("http://file", str(FILE))
    assert _server(None, {"A4C_SERVER": ""}, saved).value == "http://file"
    assert _server(None, {}, {}).value is None


def test_the_config_file_follows_xdg_config_home_else_home():
    assert config.path({"XDG_CONFIG_HOME": "/x"}) == pathlib.Path("/x/a4c/config.yaml")
    assert config.path({"HOME": "/home/u"}) == FILE


def test_a_server_must_be_an_http_url_and_the_error_names_its_source():
    with pytest.raises(errors.UsageProblem, match=r"^A4C_SERVER = 'h:1' is not an http:// or https:// URL$"):
        config.check_server(config.Setting("h:1", "A4C_SERVER"))
    assert config.check_server(config.Setting("https://a4c.example.com", "--server")) == "https://a4c.example.com"


def test_saving_creates_the_file_private_and_loading_reads_it_back(tmp_path):
    file = tmp_path / "a4c" / "config.yaml"
    config.save(file, "http://s", "t0k")
    assert file.stat().st_mode & 0o777 == 0o600
    assert config.load(file) == {"server": "http://s", "token": "t0k"}
    assert config.load(tmp_path / "missing.yaml") == {}
