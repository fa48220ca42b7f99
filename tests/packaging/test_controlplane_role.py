"""The a4c_controlplane role: documented settings, the packaging unit, a config the control plane accepts, site.yml's order."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from controlplane import settings as cp_settings
from shared import config as shared_config
from tests.packaging import playbook, units

ROLE = playbook.ANSIBLE_DIR / "roles" / "a4c_controlplane"
REQUIRED = {"a4c_controlplane_bundle", "a4c_controlplane_database_url"}
TAGS = {"a4c_controlplane_install", "a4c_controlplane_configure", "a4c_controlplane_migrate"}


def _yaml(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


def _specs(entry: str = "main") -> dict:
    return _yaml(ROLE / "meta" / "argument_specs.yml")["argument_specs"][entry]["options"]


def test_every_default_is_documented_in_the_argument_specs_with_the_same_default() -> None:
    defaults, specs = _yaml(ROLE / "defaults" / "main.yml"), _specs()
    required = {name for name, spec in specs.items() if spec.get("required")}
    assert required == REQUIRED and not required & set(defaults)
    assert sorted(set(specs) - required) == sorted(defaults), "argument_specs.yml and defaults/main.yml list different variables"
    for name, spec in specs.items():
        assert spec.get("description"), f"{name} has no description"
        if not spec.get("required"):
            assert spec.get("default") == defaults[name], f"{name}: argument_specs says {spec.get('default')!r}, defaults say {defaults[name]!r}"
    assert _specs("restart") == specs, "both entry points take the same options"


def test_every_setting_the_role_uses_is_a_documented_option() -> None:
    used = set()
    for path in ROLE.rglob("*"):
        if path.is_file() and path.suffix in (".yml", ".j2") and "meta" not in path.parts:
            used |= set(re.findall(r"(?<![_\w])a4c_controlplane_[a-z0-9_]+", path.read_text()))
    assert used - TAGS - set(_specs()) == set()


def test_the_role_installs_the_packaging_unit_which_runs_the_current_release() -> None:
    shipped = ROLE / "files" / "a4c-controlplane.service"
    assert not shipped.is_symlink()
    assert shipped.read_bytes() == (units.UNITS_DIR / "a4c-controlplane.service").read_bytes(), (
        "ansible/roles/a4c_controlplane/files/a4c-controlplane.service differs from packaging/systemd/a4c-controlplane.service: copy it over"
    )
    fixed = _yaml(ROLE / "vars" / "main.yml")
    service = units.parse(shipped.read_text())["Service"]
    assert service["ExecStart"] == [
        f"{fixed['_a4c_controlplane_prefix']}/current/bin/a4c-controlplane run --config {fixed['_a4c_controlplane_config_file']}"
    ]
    assert service["User"] == [fixed["_a4c_controlplane_user"]]


def test_site_yml_migrates_once_then_restarts_one_instance_at_a_time_then_rolls_out_agents() -> None:
    plays = _yaml(playbook.ANSIBLE_DIR / "site.yml")
    assert [p["hosts"] for p in plays] == ["a4c_controlplane", "a4c_controlplane", "a4c_agents"]
    install, restart, agents = plays
    # run_once under serial would run once per batch: the migrating play has no serial.
    assert "serial" not in install and install["any_errors_fatal"] is True
    assert restart["serial"] == 1 and restart["max_fail_percentage"] == 0
    assert restart["tasks"][0]["ansible.builtin.import_role"] == {"name": "a4c_controlplane", "tasks_from": "restart"}
    assert agents["pre_tasks"][0]["ansible.builtin.import_tasks"] == "tasks/agent-version-skew.yml"
    migrate = _yaml(ROLE / "tasks" / "migrate.yml")
    assert all(task.get("run_once") is True for task in migrate), "backup and migrate run on one host"


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory):
    """Render the role's config template with ansible-core, as the role does, for given variables."""
    home = tmp_path_factory.mktemp("ansible-home")
    count = iter(range(1000))

    def run(variables: dict) -> pathlib.Path:
        n = next(count)
        out, extra = home / f"controlplane-{n}.yaml", home / f"vars-{n}.yml"
        extra.write_text(yaml.safe_dump(variables))
        argv = [str(playbook.BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
        argv += ["-m", "ansible.builtin.template", "-a", f"src={ROLE / 'templates' / 'controlplane.yaml.j2'} dest={out} mode=0600"]
        for path in (ROLE / "defaults" / "main.yml", ROLE / "vars" / "main.yml", extra):
            argv += ["-e", f"@{path}"]
        done = subprocess.run(argv, capture_output=True, text=True, env=playbook.environment(home), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return out

    return run


BASE = {"a4c_controlplane_bundle": "dist/release/a4c-0.2.0-py311.tar.gz", "a4c_controlplane_database_url": "postgresql://a4c@db.example.com:5432/a4c"}


def test_the_rendered_config_is_one_the_control_plane_accepts_with_the_secrets_in_files(render, tmp_path: pathlib.Path) -> None:
    password = tmp_path / "db-password"
    password.write_text("s3cret\n")
    path = render(
        {
            **BASE,
            "a4c_controlplane_database_password": "s3cret",
            "_a4c_controlplane_database_password_file": str(password),  # where the role would write it
            "a4c_controlplane_http_port": 8181,
            "a4c_controlplane_kafka_bootstrap_servers": ["k1:9092", "k2:9092"],
            "a4c_controlplane_config_extra": {"reconciler": {"interval": 5.0}},
        }
    )
    assert "s3cret" not in path.read_text(), "the password stays out of controlplane.yaml"
    settings = cp_settings.load(path, environ={})
    assert settings.database.url == "postgresql://a4c:s3cret@db.example.com:5432/a4c"
    assert (settings.http.host, settings.http.port, settings.http.drain_delay, settings.http.shutdown_timeout) == ("0.0.0.0", 8181, 5.0, 10.0)
    assert settings.kafka.bootstrap_servers == ["k1:9092", "k2:9092"] and settings.kafka.sasl_password_file is None
    assert settings.reconciler.interval == 5.0
    assert settings.search.elasticsearch_url is None and settings.http.metrics_token_file is None
    assert settings.logging.format == "json"


def test_a_config_key_the_control_plane_does_not_know_is_refused_by_name(render) -> None:
    path = render({**BASE, "a4c_controlplane_config_extra": {"reconciler": {"intervall": 5.0}}})
    with pytest.raises(shared_config.ConfigError, match="intervall"):
        cp_settings.load(path, environ={})
