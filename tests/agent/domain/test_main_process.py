"""A workspace's main process: init as PID 1, a keep-alive for commands that would exit at once, the settle verdict."""

from __future__ import annotations

import pytest

from agent.domain import containers as c
from agent.domain import main_process as mp
from shared import messages

KEEP = mp.KEEP_ALIVE


@pytest.mark.parametrize(
    "config",
    [
        {"Cmd": ["sh"]},
        {"Cmd": ["/bin/bash"]},
        {"Cmd": ["bash", "-l"]},
        {"Cmd": ["/usr/bin/zsh", "-i"]},
        {"Cmd": ["python3"]},
        {"Cmd": ["busybox", "sh"]},
        {"Cmd": None},
        {},
    ],
)
def test_a_bare_shell_or_no_command_gets_the_keep_alive(config: dict) -> None:
    decided = mp.decide(None, config)
    assert decided.entrypoint is None and decided.command == KEEP and decided.why.startswith("keep-alive")


@pytest.mark.parametrize(
    "config",
    [
        {"Cmd": ["httpd", "-f", "-p", "8080"]},
        {"Cmd": ["sh", "-c", "echo boom; exit 3"]},
        {"Cmd": ["bash", "/srv/start.sh"]},
        {"Cmd": ["python3", "-m", "http.server"]},
        {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"]},
        {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["exec sleep 10"]},
    ],
)
def test_a_real_service_runs_as_the_image_says(config: dict) -> None:
    assert mp.decide(None, config) == mp.MainProcess(None, None, mp.decide(None, config).why)


def test_a_wrapper_entrypoint_is_kept_and_runs_the_keep_alive_instead_of_a_bare_shell() -> None:
    decided = mp.decide(None, {"Entrypoint": ["tini", "--"], "Cmd": ["bash"]})
    assert decided.entrypoint is None and decided.command == KEEP


def test_a_shell_entrypoint_is_replaced_by_the_keep_alive() -> None:
    decided = mp.decide(None, {"Entrypoint": ["/bin/bash"], "Cmd": []})
    assert decided.entrypoint == KEEP[:1] and decided.command == KEEP[1:]


def test_an_explicit_command_runs_as_given_even_a_shell() -> None:
    assert mp.decide(["bash"], {"Cmd": ["httpd"]}) == mp.MainProcess(None, ["bash"], "the workspace's command")


def test_the_create_request_runs_init_as_pid_1_and_the_decided_process() -> None:
    spec = messages.WorkspaceSpec(workspace_id="w", name="w", owner="o", image="img", cpus=1, memory_mb=64)
    container, host = c.create_request(spec, host_id="h", job_id=None, policy=c.RuntimePolicy(), main=mp.decide(None, {"Entrypoint": ["/bin/sh"]}))
    assert host["init"] is True
    assert container["entrypoint"] == KEEP[:1] and container["command"] == KEEP[1:]
    _, without = c.create_request(spec, host_id="h", job_id=None, policy=c.RuntimePolicy(init=False))
    assert "init" not in without


def _run(started: str = "t0", restarts: int = 0, running: bool = True, restarting: bool = False, code: int = 0) -> dict:
    return {"RestartCount": restarts, "State": {"Running": running, "Restarting": restarting, "StartedAt": started, "ExitCode": code}}


@pytest.mark.parametrize(
    ("after", "up"),
    [
        (_run(), True),
        (_run(running=False, code=3), False),
        (_run(started="t1", restarts=1), False),
        (_run(restarting=True, restarts=2, code=3), False),
    ],
)
def test_running_means_the_same_run_is_still_up_after_the_settle_period(after: dict, up: bool) -> None:
    assert mp.stayed_up(mp.Run.of(_run()), mp.Run.of(after)) is up


def test_the_failure_reason_gives_the_exit_code_the_restarts_and_the_last_log_lines() -> None:
    logs = "".join(f"line {i}\n" for i in range(40)) + "boom\n"
    reason = mp.failure_reason("the container did not stay up", mp.Run.of(_run(running=False, code=3)), 4, logs)
    assert reason.startswith("the container did not stay up (exit code 3, restarted 4 times); stopped it; last log lines:\n")
    assert reason.endswith("line 39\nboom") and "\nline 21\n" in reason and "line 20" not in reason
    silent = mp.failure_reason("x", mp.Run.of({"State": {"OOMKilled": True}}), 1, "")
    assert "killed: out of memory" in silent and "restarted 1 time)" in silent and silent.endswith("it printed nothing")
