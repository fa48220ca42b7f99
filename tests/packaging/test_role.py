"""The a4c_agent role: documented settings, one unit file, and a config the agent accepts."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from agent import settings as agent_settings
from shared import config as shared_config
from tests.packaging import playbook, units

ROLE = playbook.ANSIBLE_DIR / "roles" / "a4c_agent"


def _yaml(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


def _defaults() -> dict:
    return _yaml(ROLE / "defaults" / "main.yml")


def _specs() -> dict:
    return _yaml(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def test_every_default_is_documented_in_the_argument_specs_with_the_same_default() -> None:
    defaults, specs = _defaults(), _specs()
    required = {name for name, spec in specs.items() if spec.get("required")}
    # A required variable has no default: one would satisfy "required" and the check would never fire.
    assert required == {"a4c_agent_bundle"} and not required & set(defaults)
    assert sorted(set(specs) - required) == sorted(defaults), "argument_specs.yml and defaults/main.yml list different variables"
    for name, spec in specs.items():
        assert spec.get("description"), f"{name} has no description"
        if not spec.get("required"):
            assert spec.get("default") == defaults[name], f"{name}: argument_specs says {spec.get('default')!r}, defaults say {defaults[name]!r}"
    assert all(name.startswith("a4c_agent_") for name in defaults)


def test_every_setting_the_role_uses_is_a_documented_default() -> None:
    used = set()
    for path in ROLE.rglob("*"):
        if path.is_file() and path.suffix in (".yml", ".j2") and "meta" not in path.parts:
            used |= set(re.findall(r"(?<![_\w])a4c_agent_[a-z0-9_]+", path.read_text()))
    tags = {"a4c_agent_install", "a4c_agent_configure", "a4c_agent_run"}
    assert used - tags - set(_specs()) == set()


def test_the_role_installs_the_packaging_unit_and_uses_its_paths() -> None:
    # The role is self-contained (a copy, not a link out of it) and installs the packaging unit unchanged.
    shipped = ROLE / "files" / "a4c-agent.service"
    assert not shipped.is_symlink()
    assert shipped.read_bytes() == (units.UNITS_DIR / "a4c-agent.service").read_bytes(), (
        "ansible/roles/a4c_agent/files/a4c-agent.service differs from packaging/systemd/a4c-agent.service: copy it over"
    )
    fixed = _yaml(ROLE / "vars" / "main.yml")
    service = units.parse((units.UNITS_DIR / "a4c-agent.service").read_text())["Service"]
    assert service["ExecStart"] == [f"{fixed['_a4c_agent_current']}/bin/a4c-agent run --config {fixed['_a4c_agent_config_file']}"]
    assert service["User"] == [fixed["_a4c_agent_user"]]
    assert service["ReadWritePaths"] == [fixed["_a4c_agent_state_dir"]]


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory):
    """Render the role's config template with ansible-core, as the role does, for given variables."""
    home = tmp_path_factory.mktemp("ansible-home")
    count = iter(range(1000))

    def run(variables: dict, *, vars_files: tuple[pathlib.Path, ...] = (), vault_password: pathlib.Path | None = None) -> pathlib.Path:
        n = next(count)
        out, extra = home / f"agent-{n}.yaml", home / f"vars-{n}.yml"
        extra.write_text(yaml.safe_dump(variables))
        argv = [str(playbook.BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
        if vault_password is not None:
            argv += ["--vault-password-file", str(vault_password)]
        argv += ["-m", "ansible.builtin.template", "-a", f"src={ROLE / 'templates' / 'agent.yaml.j2'} dest={out} mode=0600"]
        for path in (ROLE / "defaults" / "main.yml", ROLE / "vars" / "main.yml", extra, *vars_files):
            argv += ["-e", f"@{path}"]
        done = subprocess.run(argv, capture_output=True, text=True, env=playbook.environment(home), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return out

    return run


def test_the_rendered_config_is_one_the_agent_accepts_with_every_setting_in_place(render) -> None:
    path = render(
        {
            "a4c_agent_bundle": "dist/release/a4c-0.1.0-py311.tar.gz",
            "a4c_agent_enrolment_token": "t0ken",
            "a4c_agent_control_plane_url": "https://a4c.example.com",
            "a4c_agent_kafka_bootstrap_servers": ["k1:9092", "k2:9092"],
            "a4c_agent_labels": {"rack": "r2"},
            "a4c_agent_cleanup_high_watermark": 90,
            "a4c_agent_cleanup_low_watermark": 60,
            "a4c_agent_metrics_port": 9555,
            "a4c_agent_config_extra": {"reporting": {"heartbeat_interval": 5.0}, "cleanup": {"dry_run": True}},
        }
    )
    settings = agent_settings.load(path, environ={})
    assert settings.agent.enrolment_token == "t0ken"
    assert settings.agent.control_plane_url == "https://a4c.example.com"
    assert settings.agent.host_name is None, "empty a4c_agent_host_name leaves the machine's name"
    assert settings.agent.labels == {"rack": "r2"}
    assert settings.kafka.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert (settings.cleanup.high_watermark, settings.cleanup.low_watermark, settings.cleanup.dry_run) == (90.0, 60.0, True)
    assert settings.reporting.heartbeat_interval == 5.0
    assert settings.daemon.metrics_port == 9555 and settings.daemon.metrics_host == "127.0.0.1"
    assert settings.docker.base_url == "unix:///var/run/docker.sock"


def test_kafka_over_sasl_ssl_is_configured_with_the_password_in_its_own_file(render) -> None:
    path = render(
        {
            "a4c_agent_bundle": "dist/release/a4c-0.1.0-py311.tar.gz",
            "a4c_agent_kafka_security_protocol": "SASL_SSL",
            "a4c_agent_kafka_sasl_username": "a4c-agent",
            "a4c_agent_kafka_sasl_password": "s3cret",
            "a4c_agent_kafka_ssl_cafile": "/etc/ssl/kafka-ca.pem",
            "a4c_agent_kafka_replication_factor": 3,
        }
    )
    assert "s3cret" not in path.read_text(), "the password stays out of agent.yaml"
    kafka = agent_settings.load(path, environ={}).kafka
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == ("SASL_SSL", "SCRAM-SHA-512", "a4c-agent")
    assert kafka.sasl_password_file == "/etc/a4c/kafka-password" and kafka.sasl_password is None
    assert (kafka.ssl_cafile, kafka.replication_factor) == ("/etc/ssl/kafka-ca.pem", 3)


def test_plaintext_kafka_needs_no_credentials(render) -> None:
    kafka = agent_settings.load(render({"a4c_agent_bundle": "dist/release/a4c-0.1.0-py311.tar.gz"}), environ={}).kafka
    assert (kafka.security_protocol, kafka.sasl_username, kafka.sasl_password_file, kafka.ssl_cafile) == ("PLAINTEXT", None, None, None)


def test_a_config_key_the_agent_does_not_know_is_refused_by_name(render) -> None:
    """a4c_agent_config_extra is passed through as is; the agent names a misspelt key instead of ignoring it."""
    path = render({"a4c_agent_bundle": "dist/release/a4c-0.1.0-py311.tar.gz", "a4c_agent_config_extra": {"reporting": {"heartbeat_intervall": 5.0}}})
    with pytest.raises(shared_config.ConfigError, match="heartbeat_intervall"):
        agent_settings.load(path, environ={})


def test_a_vaulted_token_lands_in_the_config_as_plain_text(render, tmp_path: pathlib.Path) -> None:
    """Ansible's to_nice_yaml writes vaulted values as `!vault` tags, which the agent could not read."""
    password = tmp_path / "pw"
    password.write_text("pw\n")
    vaulted = tmp_path / "vault.yml"
    playbook.vault_variable(tmp_path / "home", password, "a4c_agent_enrolment_token", "s3cret", vaulted)
    path = render({"a4c_agent_bundle": "dist/release/a4c-0.1.0-py311.tar.gz"}, vars_files=(vaulted,), vault_password=password)
    assert "!vault" not in path.read_text()
    assert agent_settings.load(path, environ={}).agent.enrolment_token == "s3cret"


def test_the_enrolment_token_is_written_only_while_the_host_has_no_identity(render) -> None:
    """Preflight registers the identity file; once it exists (or health.yml saw the agent enrol), no token stays in the config."""
    common = {"a4c_agent_bundle": "dist/release/a4c-0.1.0-py311.tar.gz", "a4c_agent_enrolment_token": "t0ken"}
    new_host = render({**common, "_a4c_agent_identity_before": {"stat": {"exists": False}}})
    assert agent_settings.load(new_host, environ={}).agent.enrolment_token == "t0ken"
    for after in ({"_a4c_agent_identity_before": {"stat": {"exists": True}}}, {"_a4c_agent_enrolled": True}):
        path = render({**common, **after})
        assert agent_settings.load(path, environ={}).agent.enrolment_token is None, after
        assert "t0ken" not in path.read_text()


def test_the_role_removes_the_token_once_the_agent_has_enrolled() -> None:
    tasks = _yaml(ROLE / "tasks" / "health.yml")
    block = next(t for t in tasks if "block" in t)["block"]
    names = [t["name"] for t in block]
    assert names.index("Remove the enrolment token from the configuration") == names.index("Check that the agent has enrolled") + 1
    removal = block[names.index("Remove the enrolment token from the configuration")]
    assert removal["vars"] == {"_a4c_agent_enrolled": True} and removal["no_log"] is True and "notify" not in removal


def test_every_tag_that_can_restart_the_agent_waits_for_its_health() -> None:
    """A restart notified under any phase's tag is flushed and waited for under that same tag."""
    main = _yaml(ROLE / "tasks" / "main.yml")
    phases = {"a4c_agent_install", "a4c_agent_configure", "a4c_agent_run"}
    (health,) = [t for t in main if t.get("ansible.builtin.import_tasks") == "health.yml"]
    assert set(health["tags"]) == phases
    assert [t["name"] for t in main][-1] == "Health", "the gate comes after every phase"
    first = _yaml(ROLE / "tasks" / "health.yml")[0]
    assert first == {"name": "Apply pending restarts", "ansible.builtin.meta": "flush_handlers"}
    notifying = {
        phase
        for phase, path in (("a4c_agent_install", "install.yml"), ("a4c_agent_configure", "configure.yml"), ("a4c_agent_run", "run.yml"))
        if "notify: Restart a4c-agent" in (ROLE / "tasks" / path).read_text()
    }
    assert notifying == phases


def test_a_restart_clears_the_failed_state_first() -> None:
    handlers = _yaml(ROLE / "handlers" / "main.yml")
    assert [h.get("listen", h["name"]) for h in handlers] == ["Restart a4c-agent", "Restart a4c-agent"]
    assert handlers[0]["ansible.builtin.command"]["argv"][:2] == ["systemctl", "reset-failed"]


def test_the_release_role_documents_every_default_for_both_entry_points() -> None:
    """ansible/roles/a4c_release: `preflight` and `main` take the same options, each default documented."""
    release = playbook.ANSIBLE_DIR / "roles" / "a4c_release"
    defaults = _yaml(release / "defaults" / "main.yml")
    specs = _yaml(release / "meta" / "argument_specs.yml")["argument_specs"]
    assert set(specs) == {"main", "preflight"} and specs["main"]["options"] == specs["preflight"]["options"]
    options = specs["main"]["options"]
    required = {name for name, spec in options.items() if spec.get("required")}
    assert required == {"a4c_release_bundle", "a4c_release_prefix"} and not required & set(defaults)
    assert sorted(set(options) - required) == sorted(defaults)
    for name, spec in options.items():
        assert spec.get("description"), f"{name} has no description"
        if name not in required:
            assert spec.get("default") == defaults[name], f"{name}: argument_specs says {spec.get('default')!r}, defaults say {defaults[name]!r}"


def test_the_agent_role_passes_the_release_role_every_option_the_same_way_in_preflight_and_install() -> None:
    def release_vars(path: str) -> dict:
        (task,) = [t for t in _yaml(ROLE / "tasks" / path) if "ansible.builtin.import_role" in t]
        assert task["ansible.builtin.import_role"]["name"] == "a4c_release"
        return task["vars"]

    preflight, install = release_vars("preflight.yml"), release_vars("install.yml")
    assert preflight == install, "preflight checks another bundle or prefix than install installs"
    assert install["a4c_release_requirements"] == "requirements-agent.txt"
