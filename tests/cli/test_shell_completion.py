"""Shell completion: ``a4c completion SHELL`` prints the script, and the script's calls complete commands and names."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.harness import ports


@pytest.mark.parametrize(
    "shell, marker",
    [
        ("bash", "complete -o nosort -F _a4c_completion a4c"),
        ("zsh", "compdef _a4c_completion a4c"),
        ("fish", "complete --no-files --command a4c"),
    ],
)
def test_the_completion_script_for_each_shell_is_printed(cli, shell, marker):
    done = cli.process("completion", shell)
    assert done.code == 0 and marker in done.stdout and "_A4C_COMPLETE" in done.stdout, str(done)


def test_an_unknown_shell_is_a_usage_error(cli):
    assert cli.process("completion", "tcsh").code == 2


def _complete(cli, words: str, **env: str | None) -> list[str]:
    """What bash's completion function gets back for the command line ``words`` (the cursor at its end)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    done = cli.process(_A4C_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword), **env)
    assert done.code == 0, str(done)
    return [line.split(",", 1)[1] for line in done.stdout.splitlines()]


def test_commands_and_subcommands_complete(cli):
    assert _complete(cli, "a4c work") == ["workspaces"]
    assert _complete(cli, "a4c workspaces ") == ["create", "delete", "exec", "get", "list", "logs", "recreate", "ssh", "start", "stop"]
    assert "--follow" in _complete(cli, "a4c images build x --f")


def test_workspace_names_complete_from_the_api(cli):
    cli.ok("workspaces", "create", "completes-me", "--image-ref", "busybox", "--cpus", "0.1", "--memory", "32", "--disk", "1")
    assert _complete(cli, "a4c workspaces get completes-") == ["completes-me"]


def test_completion_with_no_reachable_server_completes_nothing_and_prints_no_error(cli):
    done = cli.process(
        _A4C_COMPLETE="bash_complete", COMP_WORDS="a4c workspaces get x", COMP_CWORD="3", A4C_SERVER=f"http://127.0.0.1:{ports.free_port()}"
    )
    assert (done.code, done.stdout.strip(), done.stderr) == (0, "", "")


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_loads_the_script_and_knows_the_a4c_completion_function(cli):
    script = cli.process("completion", "bash").stdout
    done = subprocess.run(["bash", "-c", script + "\ncomplete -p a4c"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "_a4c_completion" in done.stdout, done.stderr
