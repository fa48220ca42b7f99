"""Scripts can branch on a4c's exit code, and people get one line that says what happened, never a traceback.

These run the installed ``a4c`` script as a subprocess: exactly what a shell sees.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from tests.harness import ports


def _one_error(done) -> str:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, str(done)
    assert done.stderr.startswith("error: "), str(done)
    return done.stderr


def test_a_server_that_is_not_running_exits_5_naming_it_and_suggesting_a4c_up(cli):
    nobody = f"http://127.0.0.1:{ports.free_port()}"
    done = cli.process("workspaces", "list", A4C_SERVER=nobody)
    assert done.code == 5, str(done)
    assert _one_error(done).strip() == f"error: cannot reach the A4C API at {nobody}: connection refused; is it running? (a4c up)"


@pytest.fixture
def not_the_api():
    """A plain HTTP server on a free port: answers, but HTML and its own 404s."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_the_a4c_api_exits_5_saying_so_rather_than_not_found(cli, not_the_api):
    done = cli.process("workspaces", "get", "dev", A4C_SERVER=not_the_api)
    assert done.code == 5, str(done)
    assert f"{not_the_api} answered HTTP 404" in _one_error(done) and "without an A4C error body" in done.stderr


class _Failing(http.server.BaseHTTPRequestHandler):
    """Answers every request as the API answers an internal error, with its request id."""

    def do_GET(self) -> None:
        body = b'{"error": {"code": "internal", "message": "internal error; it has been logged", "fields": []}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", "7f3c0e5b9d2a4c1e8b6f0a9d3e2c1b4a")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_error_names_the_request_id_to_find_in_the_control_planes_log(cli):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = cli.process("workspaces", "list", A4C_SERVER=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert "the A4C API failed (500 internal)" in _one_error(done)
    assert "see the control plane's log (request id 7f3c0e5b9d2a4c1e8b6f0a9d3e2c1b4a)" in done.stderr


def test_a_rejected_token_exits_4_and_says_to_run_a4c_login(cli):
    done = cli.process("workspaces", "list", A4C_TOKEN="a4c_not_a_real_token")
    assert done.code == 4, str(done)
    assert "the token was rejected" in _one_error(done) and "run a4c login" in done.stderr


def test_a_user_token_on_an_admin_command_exits_4_saying_it_is_not_allowed(cli):
    name = "exit-four-user"
    user = cli.api("POST", "/v1/users", {"name": name})
    token = cli.api("POST", f"/v1/users/{user['id']}/tokens", {})["token"]
    done = cli.process("hosts", "list", A4C_TOKEN=token)
    assert done.code == 4, str(done)
    assert "not allowed" in _one_error(done) and "admin" in done.stderr


def test_something_that_does_not_exist_exits_3(cli):
    done = cli.process("workspaces", "get", "no-such-workspace")
    assert done.code == 3, str(done)
    assert "no workspace named 'no-such-workspace'" in _one_error(done)
    by_id = cli.process("jobs", "get", "00000000-0000-4000-8000-000000000000")
    assert by_id.code == 3, str(by_id)


def test_invalid_input_exits_6_and_names_every_bad_field_with_its_reason(cli):
    done = cli.process("workspaces", "create", "Bad Name", "--image-ref", "busybox", "--cpus", "0", "--memory", "1")
    assert done.code == 6, str(done)
    lines = _one_error(done).splitlines()
    assert lines[0] == "error: invalid input:"
    fields = {line.strip().split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines[1:]}
    assert set(fields) == {"name", "cpus", "memory_mb"}, lines
    assert "greater than 0" in fields["cpus"] and "16" in fields["memory_mb"] and "pattern" in fields["name"]


def test_a_usage_mistake_exits_2_as_click_reports_it(cli):
    unknown = cli.process("workspaces", "list", "--no-such-flag")
    assert unknown.code == 2 and "No such option '--no-such-flag'" in unknown.stderr, str(unknown)
    neither = cli.process("workspaces", "create", "x")
    assert neither.code == 2 and "give exactly one of --image" in neither.stderr, str(neither)
    bad_env = cli.process("workspaces", "create", "x", "--image-ref", "busybox", "--env", "NOEQUALS")
    assert bad_env.code == 2 and "--env" in bad_env.stderr and "KEY=VALUE" in bad_env.stderr, str(bad_env)


def test_no_server_anywhere_exits_2_saying_how_to_give_one(cli):
    done = cli.process("workspaces", "list", A4C_SERVER=None)
    assert done.code == 2, str(done)
    assert "no server given" in _one_error(done) and "a4c login" in done.stderr


def test_no_token_anywhere_exits_2_saying_how_to_give_one(cli):
    done = cli.process("workspaces", "list", A4C_TOKEN=None)
    assert done.code == 2, str(done)
    assert "no token given" in _one_error(done) and "a4c login" in done.stderr


def test_a_server_setting_that_is_not_a_url_exits_2_naming_where_it_came_from(cli):
    done = cli.process("workspaces", "list", A4C_SERVER="localhost:8080")
    assert done.code == 2, str(done)
    assert "A4C_SERVER = 'localhost:8080' is not an http:// or https:// URL" in _one_error(done)


def test_an_operation_the_api_refuses_exits_1_with_its_reason(cli):
    assert cli.process("workspaces", "create", "taken", "--image-ref", "busybox", "--cpus", "0.1", "--memory", "32", "--disk", "1").code == 0
    again = cli.process("workspaces", "create", "taken", "--image-ref", "busybox", "--cpus", "0.1", "--memory", "32", "--disk", "1")
    assert again.code == 1, str(again)
    assert "already have a workspace named 'taken'" in _one_error(again)


def test_success_exits_0_with_nothing_on_stderr_for_a_listing(cli):
    done = cli.process("-o", "json", "images", "list")
    assert done.code == 0 and done.stderr == "", str(done)
