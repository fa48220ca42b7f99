"""Fixtures for the CLI tests: a real control plane (``a4c-controlplane run``) and two ways to run ``a4c``.

``cli.run(...)`` invokes the click app in-process (fast; what most tests
use); ``cli.process(...)`` runs the installed ``a4c`` script as a
subprocess (exactly what a shell script sees: exit status, stdout, stderr).
Both start from an environment holding the admin's server and token and a
private ``XDG_CONFIG_HOME``; keyword arguments override variables, ``None``
removes one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import typing
import urllib.request

import pytest
from click import testing

from a4c import cli as a4c_cli
from tests.e2e import system
from tests.e2e.conftest import workspace_image  # noqa: F401 - the busybox httpd image, shared with e2e

BIN = pathlib.Path(sys.executable).parent


@dataclasses.dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclasses.dataclass
class Cli:
    server: str
    token: str
    home: pathlib.Path

    def env(self, overrides: typing.Mapping[str, str | None]) -> dict[str, str | None]:
        base: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("A4C_", "_A4C"))}
        base.update({"A4C_SERVER": self.server, "A4C_TOKEN": self.token, "XDG_CONFIG_HOME": str(self.home / "config")})
        base.update(overrides)
        return base

    def run(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        done = testing.CliRunner().invoke(a4c_cli.main, list(args), env=self.env(env), input=input, catch_exceptions=False, prog_name="a4c")
        return Result(done.exit_code, done.stdout, done.stderr)

    def process(self, *args: str, **env: str | None) -> Result:
        merged = {k: v for k, v in {**os.environ, **self.env(env)}.items() if v is not None}
        done = subprocess.run([str(BIN / "a4c"), *args], capture_output=True, text=True, env=merged, timeout=120)
        return Result(done.returncode, done.stdout, done.stderr)

    def api(self, method: str, path: str, body: typing.Any = None, token: str | None = None) -> typing.Any:
        """The API itself, without the CLI: what ``-o json`` must reproduce."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def ok(self, *args: str, **env: str | None) -> Result:
        """Run in-process and insist on exit 0 (the failure shows both streams)."""
        done = self.run(*args, **env)
        assert done.code == 0, f"a4c {' '.join(args)}\n{done}"
        return done


# One database per module: the control plane process (seconds to start) serves every test of the module.
@pytest.fixture(scope="module")
def control_plane(tmp_path_factory, module_database_url, kafka_bootstrap, test_run_id) -> typing.Iterator[tuple[str, str]]:
    """``a4c-controlplane run`` on a free loopback port, no agents; yields (URL, admin token)."""
    workdir = tmp_path_factory.mktemp("cli-cp")
    plane = system.ControlPlane(
        workdir,
        "cp",
        {
            "database": {"url": module_database_url},
            "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": f"cli{test_run_id[-6:]}"},
            "rate_limit": {"enabled": False},
            "logging": {"format": "text"},
        },
    ).start()
    try:
        yield plane.url, system.create_admin(workdir / "cp.yaml", workdir)
    finally:
        plane.stop()


@pytest.fixture
def cli(control_plane, tmp_path) -> Cli:
    url, token = control_plane
    return Cli(url, token, tmp_path)
