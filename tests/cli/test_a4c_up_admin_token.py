"""`a4c up` checks its kept admin token before using it.

A token revoked (or expired) behind its back used to surface as a bare 401 from
the enrolment step. Now `a4c up` stops at the check, exits 1, names the token
file and says how to get a new one; following that advice brings it up again
with the same data.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.cli import a4c_up
from tests.cli.a4c_up import Up
from tests.harness import ports, wait


@pytest.fixture
def up(docker_host):
    with a4c_up.private_home() as home:
        instance = Up(home, ports.free_port(), {"DOCKER_HOST": docker_host})
        try:
            yield instance
        finally:
            instance.stop()


def _call(method: str, url: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def test_a_revoked_admin_token_stops_a4c_up_with_the_file_and_the_recovery_and_the_recovery_works(up):
    up.start()
    api = f"http://127.0.0.1:{up.port}/v1"
    token_file = up.state / "admin.token"
    kept = token_file.read_text().strip()
    me = _call("GET", f"{api}/me", kept)
    # A second admin token, so that the kept one may be revoked (the last one may not).
    other = _call("POST", f"{api}/users/{me['id']}/tokens", kept, {"name": "test: survives"})["token"]
    _call("DELETE", f"{api}/tokens/{me['token_id']}", other)
    assert up.ctrl_c().code == 0

    up.process = None
    refused = up.a4c("up", "--state-dir", str(up.state), "--port", str(up.port), check=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1, said
    assert f"the admin token in {token_file} is no longer accepted" in said
    assert f"rm {token_file} && a4c up --state-dir {up.state}" in said
    assert "local agent" not in said, "it stopped at the check, before the agent was started"

    token_file.unlink()
    up.start()
    fresh = token_file.read_text().strip()
    assert fresh != kept
    assert _call("GET", f"{api}/me", fresh)["name"] == "admin"
    # The same data: the token made before the restart still works.
    assert _call("GET", f"{api}/me", other)["id"] == me["id"]
    wait.wait_until(
        lambda: any(h["status"] == "active" for h in _call("GET", f"{api}/hosts", fresh)["items"]), timeout=60, message="local agent active again"
    )
