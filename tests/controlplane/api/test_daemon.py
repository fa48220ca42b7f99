"""``a4c-controlplane`` as operators run it: create-admin, run under systemd (READY/WATCHDOG/STOPPING), SIGTERM, example config."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import urllib.request

import pytest
import yaml

from controlplane import example_config
from controlplane import settings as cp_settings
from tests.harness import ports, wait

ROOT = pathlib.Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "controlplane.cli"]


def environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("A4C_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(
        {
            "A4C_DATABASE__URL": database_url,
            # Nothing listens there: the background consumers retry quietly instead of finding someone else's broker.
            "A4C_KAFKA__BOOTSTRAP_SERVERS": f"[127.0.0.1:{ports.free_port()}]",
            "A4C_RELAY__ENABLED": "false",
            "A4C_RECONCILER__ENABLED": "false",
            "A4C_SCHEDULER__ENABLED": "false",
            "A4C_LOGGING__FORMAT": "text",
        }
    )
    env.update(extra)
    return env


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def served(database_url, tmp_path, request):
    """``a4c-controlplane run`` under a fake systemd: a datagram socket collecting sd_notify messages.

    Indirect parametrization adds environment variables (settings) to the daemon's.
    """
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(0.2)
    port = ports.free_port()
    extra = getattr(request, "param", {})
    env = environment(database_url, A4C_HTTP__PORT=str(port), NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="400000", **extra)
    # Its output goes to a file, never to a pipe nobody reads: once a pipe's
    # 64 KiB fill up (the consumers log each failed attempt to reach the
    # absent broker), every log call blocks the event loop and requests hang.
    log = tmp_path / "controlplane.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CLI, "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    received: list[str] = []

    def notes() -> list[str]:
        while True:
            try:
                received.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                return received

    try:
        yield proc, f"http://127.0.0.1:{port}", notes
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        sock.close()


def test_run_serves_tells_systemd_it_is_ready_and_alive_and_stops_cleanly_on_sigterm(served):
    proc, base, notes = served
    wait.wait_until(lambda: "READY=1" in notes(), timeout=30, message="READY=1 from sd_notify")
    assert get(f"{base}/healthz") == (200, b'{"status":"ok"}')
    assert any(n.startswith("STATUS=serving on http://127.0.0.1:") and n.endswith("(event loop: uvloop)") for n in notes()), notes()
    wait.wait_until(lambda: notes().count("WATCHDOG=1") >= 2, timeout=5, message="watchdog pings at half WATCHDOG_USEC")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.log.read_text()
    assert "STOPPING=1" in notes()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/healthz", timeout=2)


@pytest.mark.parametrize("served", [{"A4C_RUNTIME__EVENT_LOOP": "asyncio"}], indirect=True)
def test_the_standard_librarys_event_loop_is_one_setting_away(served):
    proc, base, notes = served
    wait.wait_until(lambda: "READY=1" in notes(), timeout=30, message="READY=1 from sd_notify")
    assert any(n.endswith("(event loop: asyncio)") for n in notes() if n.startswith("STATUS=")), notes()
    assert get(f"{base}/healthz")[0] == 200
    assert "(event loop: asyncio)" in proc.log.read_text()


def test_an_unknown_event_loop_stops_run_with_one_line_naming_the_setting(database_url):
    env = environment(database_url, A4C_RUNTIME__EVENT_LOOP="trio")
    done = subprocess.run([*CLI, "run"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "runtime.event_loop" in done.stderr and "uvloop" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_create_admin_writes_a_working_token_to_a_private_file(database_url, tmp_path, served):
    _, base, notes = served
    token_file = tmp_path / "admin.token"
    done = subprocess.run(
        [*CLI, "create-admin", "--name", "root", "--token-file", str(token_file)], env=environment(database_url), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and token_file.read_text().strip() not in done.stdout + done.stderr
    wait.wait_until(lambda: "READY=1" in notes(), timeout=30, message="API up")
    status, body = get(f"{base}/v1/me", token_file.read_text().strip())
    assert status == 200 and yaml.safe_load(body)["role"] == "admin"
    # Run again: the same admin, a second working token, printed this time.
    again = subprocess.run([*CLI, "create-admin", "--name", "root"], env=environment(database_url), capture_output=True, text=True)
    assert again.returncode == 0 and get(f"{base}/v1/me", again.stdout.strip())[0] == 200


def test_create_admin_refuses_a_bad_name_or_a_non_admin_in_one_line(database_url):
    bad = subprocess.run([*CLI, "create-admin", "--name", "Not Valid"], env=environment(database_url), capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: name:") and "Traceback" not in bad.stderr
    unreachable = environment(database_url, A4C_DATABASE__URL=f"postgresql://postgres@127.0.0.1:{ports.free_port()}/x")
    down = subprocess.run([*CLI, "create-admin", "--name", "root"], env=unreachable, capture_output=True, text=True)
    assert down.returncode == 1 and "cannot reach the database" in down.stderr and "Traceback" not in down.stderr


def test_a_misspelt_setting_stops_run_with_one_line_naming_it(database_url, tmp_path):
    config = tmp_path / "cp.yaml"
    config.write_text("http:\n  prot: 8080\n")
    done = subprocess.run([*CLI, "run", "--config", str(config)], env=environment(database_url), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "http.prot: unknown key" in done.stderr and "Traceback" not in done.stderr


def test_the_shipped_example_config_is_generated_from_the_settings_and_documents_every_key():
    shipped = (ROOT / "packaging" / "config" / "controlplane.yaml").read_text()
    assert shipped == example_config.render(), "regenerate: a4c-controlplane example-config > packaging/config/controlplane.yaml"
    data = yaml.safe_load(shipped)
    assert cp_settings.Settings.model_validate(data) == cp_settings.Settings()
    for group, field in cp_settings.Settings.model_fields.items():
        model = field.annotation
        assert set(data[group]) == set(model.model_fields), group
        for key, sub in model.model_fields.items():
            assert sub.description or key == "level", f"{group}.{key} has no description"
