"""The CLI's contract for scripts: -o json shapes, exit codes, and errors that say what happened (never a traceback)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.e2e import system

BIN = pathlib.Path(sys.executable).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory, database_url, kafka_bootstrap):
    workdir = tmp_path_factory.mktemp("cli")
    plane = system.ControlPlane(workdir, "cp", {
        "database": {"url": database_url}, "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": "cli"},
        "rate_limit": {"enabled": False}, "logging": {"format": "text"},
    }).start()
    token = system.create_admin(workdir / "cp.yaml", workdir)
    yield plane.url, token, workdir
    plane.stop()


def a4c(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("A4C_")}
    return subprocess.run([str(BIN / "a4c"), *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=120)


def _env(server, **extra) -> dict[str, str]:
    url, token, workdir = server
    return {"A4C_SERVER": url, "A4C_TOKEN": token, "XDG_CONFIG_HOME": str(workdir / "config"), **extra}


def test_an_unreachable_server_exits_5_with_a_hint_and_no_traceback(tmp_path):
    done = a4c("--server", "http://127.0.0.1:9", "--token", "x", "workspaces", "list", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert done.returncode == 5
    assert "cannot reach the A4C API at http://127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr


def test_a_rejected_token_exits_4_and_says_to_log_in(server):
    done = a4c("workspaces", "list", env=_env(server, A4C_TOKEN="a4c_not_a_real_token"))
    assert done.returncode == 4 and "run: a4c login" in done.stderr


def test_invalid_input_exits_6_naming_the_field(server):
    done = a4c("workspaces", "create", "BAD NAME", "--image-ref", "busybox", env=_env(server))
    assert done.returncode == 6 and "name" in done.stderr, done.stderr


def test_something_missing_exits_3(server):
    done = a4c("workspaces", "get", "no-such-workspace", env=_env(server))
    assert done.returncode == 3 and "no workspace" in done.stderr


def test_a_usage_error_exits_2(server):
    assert a4c("workspaces", "create", "x", env=_env(server)).returncode == 2  # neither --image nor --image-ref


def test_json_output_is_the_apis_objects(server):
    created = a4c("-o", "json", "workspaces", "create", "pending-one", "--image-ref", "busybox", "--cpus", "0.5", "--memory", "64", "--disk", "1", env=_env(server))
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert set(body) == {"workspace", "job"}
    # No agent is enrolled: it waits, and says why.
    assert body["workspace"]["observed_state"] == "pending" and "no eligible host" in body["workspace"]["state_reason"]
    listed = json.loads(a4c("-o", "json", "workspaces", "list", env=_env(server)).stdout)
    assert [w["id"] for w in listed] == [body["workspace"]["id"]]


def test_waiting_for_a_workspace_that_cannot_run_times_out_with_exit_1_saying_what_it_waited_for(server):
    done = a4c("workspaces", "create", "never-runs", "--image-ref", "busybox", "--wait", "--timeout", "2", env=_env(server))
    assert done.returncode == 1
    assert "timed out after 2s waiting for the workspace to be running" in done.stderr and "no eligible host" in done.stderr


def test_login_checks_the_token_and_saves_it_readable_only_by_you(server, tmp_path):
    url, token, _ = server
    done = a4c("login", "--server", url, "--token", token, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert done.returncode == 0 and "as admin (admin)" in done.stdout
    saved = tmp_path / "a4c" / "config.yaml"
    assert saved.stat().st_mode & 0o777 == 0o600
    # The saved server/token are used when no flag or variable says otherwise; flags win over the file.
    assert a4c("workspaces", "list", env={"XDG_CONFIG_HOME": str(tmp_path)}).returncode == 0
    assert a4c("--token", "wrong", "workspaces", "list", env={"XDG_CONFIG_HOME": str(tmp_path)}).returncode == 4


def test_shell_completion_scripts_are_printed():
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files --command a4c")):
        done = a4c("completion", shell)
        assert done.returncode == 0 and marker in done.stdout, (shell, done.stdout[:200])
