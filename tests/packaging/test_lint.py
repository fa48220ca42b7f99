"""The Ansible content is clean for yamllint and for ansible-lint's production profile."""

from __future__ import annotations

import os
import subprocess

from tests.packaging import playbook


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{playbook.BIN}{os.pathsep}{os.environ.get('PATH', '')}", NO_COLOR="1", ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(playbook.BIN / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=playbook.ANSIBLE_DIR, env=env, timeout=300)


def test_yamllint_finds_nothing_in_the_ansible_content() -> None:
    done = _run("yamllint", "--strict", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ansible_lint_passes_the_production_profile() -> None:
    done = _run("ansible-lint", "--profile", "production", "--offline", "--nocolor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr
