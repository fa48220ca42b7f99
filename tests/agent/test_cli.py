"""``a4c-agent``: config problems are one line and exit status 2; the example config is the settings' own documentation."""

from __future__ import annotations

import pathlib
import subprocess

import pytest
import yaml

from agent import __version__, example_config
from agent import settings as agent_settings
from tests.agent import driver

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(driver.AGENT_BIN), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("kafka:\n  bootstrap_server: [x]\n", "config error: kafka.bootstrap_server: unknown key"),
        ("cleanup:\n  high_watermark: 50\n  low_watermark: 60\n", "config error: cleanup: low_watermark must be below high_watermark"),
        ("docker:\n  restart_policy: sometimes\n", "config error: docker.restart_policy: Input should be"),
        ("reporting: [1, 2]\n", "config error: reporting: Input should be a valid dictionary"),
        ("agent: {state_dir: [unclosed\n", "not valid YAML at line"),
    ],
    ids=["misspelt-key", "watermarks-reversed", "bad-choice", "wrong-shape", "broken-yaml"],
)
def test_a_config_error_prints_one_line_naming_the_key_and_exits_2(tmp_path: pathlib.Path, config: str, message: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(config)
    proc = _run("run", "--config", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_a_missing_config_file_is_a_one_line_error() -> None:
    proc = _run("run", "--config", "/nonexistent/agent.yaml")
    assert proc.returncode == 2 and "cannot read /nonexistent/agent.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_version_prints_the_package_version() -> None:
    proc = _run("version")
    assert proc.returncode == 0 and proc.stdout.strip() == __version__


def test_the_shipped_example_config_is_generated_from_the_settings_and_documents_every_key() -> None:
    shipped = (ROOT / "packaging" / "config" / "agent.yaml").read_text()
    assert shipped == example_config.render(), "regenerate it: a4c-agent example-config > packaging/config/agent.yaml"
    data = yaml.safe_load(shipped)
    assert agent_settings.Settings.model_validate(data) == agent_settings.Settings()
    for group, model in agent_settings.Settings.model_fields.items():
        assert set(data[group]) == set(model.annotation.model_fields), group  # type: ignore[union-attr]
    for group in ("agent", "docker", "reporting", "cleanup", "builds", "daemon", "commands"):
        for key, field in getattr(agent_settings, type(getattr(agent_settings.Settings(), group)).__name__).model_fields.items():
            assert field.description, f"{group}.{key} has no description"
