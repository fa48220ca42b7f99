"""The systemd units in packaging/systemd verify, stop later than their daemons' deadlines, and keep their sandbox."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

from agent import settings as agent_settings
from controlplane import settings as cp_settings
from tests.packaging import units

UNIT_FILES = units.unit_files()
# A virtualenv, or the `current` symlink to a release of one (ansible/roles/a4c_release).
VENV_BIN = re.compile(r"/opt/(a4c-[a-z-]+(?:/current)?)/bin/")

# Every unit keeps these (a tuple: any of them); systemd-analyze security on a
# real host measures the result (tests/packaging/test_rollout.py).
SANDBOX: dict[str, str | tuple[str, ...]] = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectProc": "invisible",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
}


def test_the_three_units_are_there() -> None:
    assert [p.name for p in UNIT_FILES] == ["a4c-agent.service", "a4c-controlplane.service", "a4c-search-sync.service"]


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda p: p.name)
def test_every_unit_passes_systemd_analyze_verify(unit: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """verify wants ExecStart's binary to exist: the copy runs stand-ins from a scratch bin/, nothing else differs."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (Debian package systemd; `make deps` installs it)")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    original = unit.read_text()
    for venv in set(VENV_BIN.findall(original)):
        for binary in re.findall(rf"/opt/{venv}/bin/(\S+)", original):
            stub = stubs / binary
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(VENV_BIN.sub(f"{stubs}/", original))
    changed = [line for line in copy.read_text().splitlines() if line not in original.splitlines()]
    assert changed and all(line.startswith("ExecStart=") for line in changed), changed

    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_verify_rejects_a_unit_with_a_mistake(tmp_path: pathlib.Path) -> None:
    """The verify test above would catch a broken unit: the same check fails on a misspelt directive."""
    broken = tmp_path / "a4c-broken.service"
    broken.write_text("[Service]\nType=notify\nExecStart=/bin/true\nProtectSytem=strict\n")
    done = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "ProtectSytem" in done.stdout + done.stderr


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    return units.parse((units.UNITS_DIR / name).read_text())


@pytest.mark.parametrize(
    ("name", "deadline"),
    [
        ("a4c-agent.service", agent_settings.DaemonSettings().shutdown_deadline),
        ("a4c-controlplane.service", cp_settings.HttpSettings().shutdown_timeout + cp_settings.HttpSettings().drain_delay),
    ],
)
def test_each_daemon_unit_stops_later_than_its_daemons_own_deadline(name: str, deadline: float) -> None:
    service = _unit(name)["Service"]
    assert units.seconds(service["TimeoutStopSec"][-1]) >= deadline + 5, (service["TimeoutStopSec"], deadline)


@pytest.mark.parametrize("name", ["a4c-agent.service", "a4c-controlplane.service", "a4c-search-sync.service"])
def test_the_daemons_that_speak_sd_notify_run_as_notify_units_with_a_watchdog(name: str) -> None:
    service = _unit(name)["Service"]
    assert service["Type"] == ["notify"]
    assert units.seconds(service["WatchdogSec"][-1]) > 0
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"], "exit status 2 (config or enrolment refused) is not retried"
    unit = _unit(name)["Unit"]
    assert int(unit["StartLimitBurst"][-1]) > 0 and units.seconds(unit["StartLimitIntervalSec"][-1]) > 0


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda p: p.name)
def test_every_unit_runs_as_its_own_user_inside_the_sandbox(unit: pathlib.Path) -> None:
    service = units.parse(unit.read_text())["Service"]
    assert service["User"][-1] not in ("", "root")
    found = {key: service.get(key, ["<unset>"])[-1] for key in SANDBOX}
    wrong = {key: value for key, value in found.items() if value not in (SANDBOX[key] if isinstance(SANDBOX[key], tuple) else (SANDBOX[key],))}
    assert wrong == {}, f"{unit.name}: {wrong}"
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    # systemd 252 cannot start a unit with both (docs/operations/systemd.md).
    assert "PrivateUsers" not in service


def test_the_agent_unit_writes_only_the_agents_default_state_dir_and_reaches_docker_through_its_group() -> None:
    service = _unit("a4c-agent.service")["Service"]
    state_dir = agent_settings.AgentSettings().state_dir
    assert service["StateDirectory"] == [pathlib.Path(state_dir).name] and state_dir.startswith("/var/lib/")
    assert service["ReadWritePaths"] == [state_dir]
    assert service["SupplementaryGroups"] == ["docker"]
    assert service["ExecStart"] == ["/opt/a4c-agent/current/bin/a4c-agent run --config /etc/a4c/agent.yaml"]


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda p: p.name)
def test_every_unit_bounds_its_resources_and_says_why(unit: pathlib.Path) -> None:
    """Units share hosts with developers' workloads: descriptors, OOM preference and tasks are set, each with a reason."""
    service = units.parse(unit.read_text())["Service"]
    assert int(service["LimitNOFILE"][-1]) > 1024, "above the default soft limit"
    assert int(service["OOMScoreAdjust"][-1]) < 0, "the kernel should pick a workload before the daemon"
    assert int(service["TasksMax"][-1]) > 0
    lines = unit.read_text().splitlines()
    for key in ("LimitNOFILE", "OOMScoreAdjust", "TasksMax"):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}="))
        before = lines[max(0, at - 16) : at]
        assert any(line.startswith("#") and key in line for line in before), f"{unit.name}: no comment says why {key}"


def test_the_control_plane_has_descriptors_for_every_connection_it_may_hold() -> None:
    service = _unit("a4c-controlplane.service")["Service"]
    settings = cp_settings.Settings()
    # Listener connections, two database pools with their overflow, and room for Kafka, Elasticsearch and files.
    needed = settings.http.max_connections + 2 * 2 * settings.database.pool_size + 256
    assert int(service["LimitNOFILE"][-1]) >= needed


def test_the_agent_is_the_last_thing_on_its_host_the_kernel_would_kill() -> None:
    agent = int(_unit("a4c-agent.service")["Service"]["OOMScoreAdjust"][-1])
    others = [int(units.parse(p.read_text())["Service"]["OOMScoreAdjust"][-1]) for p in UNIT_FILES if p.name != "a4c-agent.service"]
    assert agent < min(others)
