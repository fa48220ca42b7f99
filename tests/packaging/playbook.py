"""Running ``ansible-playbook`` from this virtualenv against test servers, and reading its recap."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
import typing

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
BIN = pathlib.Path(sys.executable).parent

_RECAP = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.M)


@dataclasses.dataclass
class Result:
    argv: list[str]
    returncode: int
    output: str
    seconds: float = 0.0
    # (seconds into the run, line) for each task header: where the time went
    timeline: list[tuple[float, str]] = dataclasses.field(default_factory=list)

    def slowest(self, count: int = 5) -> list[tuple[float, str]]:
        marks = [*self.timeline, (self.seconds, "end")]
        spans = [(round(marks[i + 1][0] - at, 1), line) for i, (at, line) in enumerate(marks[:-1])]
        return sorted(spans, reverse=True)[:count]

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """Per host: ok, changed, unreachable, failed, skipped, rescued, ignored (the PLAY RECAP)."""
        text = self.output.rpartition("PLAY RECAP")[2]
        return {host: {k: int(v) for k, v in (pair.split("=") for pair in counts.split())} for host, counts in _RECAP.findall(text)}

    def changed_tasks(self) -> list[str]:
        """'TASK [...]' headers followed by a 'changed:' line: what a supposedly idempotent run changed."""
        out, task = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.rstrip("* ")
            elif line.startswith("changed:"):
                out.append(f"{task} {line}")
        return out

    def failed_tasks(self, host: str) -> list[str]:
        """Headers of the tasks that failed on ``host``, in order, rescued ones included: the last one failed the host."""
        out, task = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.rstrip("* ")
            elif line.startswith(f"fatal: [{host}]"):
                out.append(task)
        return out

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\n(exit {self.returncode})\n{self.output[-12000:]}"


def environment(home: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            # Test servers get fresh host keys on every run.
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            # Lines as they happen, and each task's banner when it starts (not
            # deferred to its first shown result), so that the timeline says
            # where the time went.
            "PYTHONUNBUFFERED": "1",
            "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "True",
        }
    )
    return env


def hosts(servers: typing.Iterable[typing.Any]) -> dict[str, dict[str, typing.Any]]:
    """Inventory entries for test servers (tests/packaging/servers.py): SSH and metrics port on loopback."""
    return {s.name: {"ansible_host": "127.0.0.1", "ansible_port": s.ssh_port, "a4c_agent_metrics_port": s.metrics_port} for s in servers}


def connection_vars(private_key: pathlib.Path) -> dict[str, str]:
    return {
        "ansible_user": "root",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": str(private_key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }


def write_inventory(
    directory: pathlib.Path, hosts: dict[str, dict[str, typing.Any]], group_vars: dict[str, typing.Any], *, group: str = "a4c_agents"
) -> pathlib.Path:
    """``hosts.yml`` with the group ``group`` (site.yml's a4c_agents or a4c_controlplane); its vars in group_vars/<group>/main.yml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({group: {"hosts": hosts}}, sort_keys=True))
    vars_dir = directory / "group_vars" / group
    vars_dir.mkdir(parents=True, exist_ok=True)
    (vars_dir / "main.yml").write_text(yaml.safe_dump(group_vars, sort_keys=True))
    return directory


def vault_variable(home: pathlib.Path, password_file: pathlib.Path, name: str, secret: str, target: pathlib.Path) -> None:
    """Write ``name: <secret>`` encrypted with ansible-vault into ``target`` (a vars file)."""
    done = subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password_file), "--name", name, secret],
        capture_output=True,
        text=True,
        env=environment(home),
        timeout=60,
    )
    if done.returncode != 0:
        raise AssertionError(f"ansible-vault encrypt_string failed:\n{done.stderr}")
    target.write_text(done.stdout)


def run(home: pathlib.Path, inventory: pathlib.Path | str, *args: str, timeout: float = 600, playbook_file: pathlib.Path | None = None) -> Result:
    """``ansible-playbook`` on site.yml (or ``playbook_file``), run from ansible/ so that its roles are found."""
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook_file or ANSIBLE_DIR / "site.yml"), *args]
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    lines, timeline = [], []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment(home), cwd=ANSIBLE_DIR) as process:
        assert process.stdout is not None
        # A silent hang must end too: the timer kills it, which ends the output.
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            for line in process.stdout:
                lines.append(line)
                if line.startswith(("TASK [", "RUNNING HANDLER [", "PLAY [")):
                    timeline.append((time.monotonic() - began, line.rstrip(" *\n")))
            returncode = process.wait()
        finally:
            killer.cancel()
        if time.monotonic() - began >= timeout:
            lines.append(f"\n(killed by the test after {timeout} s)\n")
    return Result(argv, returncode, "".join(lines), time.monotonic() - began, timeline)
