"""`a4c up` and the Docker daemon (none answering, not allowed to start one / allowed to), and `a4c up --config`.

What "allowed" means (a4c/embedded.py ``dockerd``): when ``$DOCKER_HOST`` is
unset and no daemon answers at the default socket, ``a4c up`` starts its own ``dockerd``
only if it runs as root and ``dockerd`` (Debian's docker.io) is on the PATH.
The tests reach "not allowed" both ways for real: a PATH without dockerd,
and a user namespace in which the process is not root (``unshare --user``:
uid 65534 there, no capabilities outside it).

The config-file tests use the harness's PostgreSQL (a database of their own),
broker and Elasticsearch-API server, so no embedded component starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import socket
import subprocess
import urllib.request
import uuid

import asyncpg
import psutil
import pytest
import yaml
from aiokafka import admin as kafka_admin

from a4c import embedded
from a4c import up as up_mod
from tests.cli import a4c_up
from tests.cli.a4c_up import BIN, STEP, Up
from tests.harness import ports, postgres_server, wait

DEFAULT_SOCKET = up_mod.DEFAULT_DOCKER_SOCKET


@pytest.fixture
def home():
    with a4c_up.private_home() as path:
        yield path


@pytest.fixture
def no_daemon(home) -> str:
    """DOCKER_HOST unset ("" in a child's environment) and nothing at the default socket (else the branch is unreachable)."""
    if embedded.docker_answers(DEFAULT_SOCKET):
        pytest.skip(f"a Docker daemon answers at {DEFAULT_SOCKET}: a4c up would use it, so 'none answers' cannot happen here")
    return ""


def _path_without_dockerd() -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (pathlib.Path(d) / "dockerd").exists())


def _unprivileged() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--user", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --user is not available: cannot run a4c up as a user other than root here")
    return [unshare, "--user"]


def _processes_mentioning(path: pathlib.Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if str(path) in line:
            found.append(f"{proc.info['pid']} {line[:200]}")
    return found


@pytest.mark.parametrize(
    ("how", "missing"),
    [("dockerd is not installed", "dockerd is not installed"), ("a4c up is not root", "starting one needs root")],
    ids=["without-dockerd-on-the-path", "as-a-user-other-than-root"],
)
def test_a4c_up_with_no_docker_daemon_and_no_right_to_start_one_says_what_is_missing_exits_1_and_starts_nothing(home, no_daemon, how, missing):
    state = home / "state"
    env = {**os.environ, "DOCKER_HOST": no_daemon, "XDG_CONFIG_HOME": str(home / "config")}
    prefix: list[str] = []
    if how == "dockerd is not installed":
        env["PATH"] = _path_without_dockerd()
        assert shutil.which("dockerd", path=env["PATH"]) is None
    else:
        assert shutil.which("dockerd") is not None, "dockerd is installed, so only the missing root stops it"
        prefix = _unprivileged()

    done = subprocess.run(
        [*prefix, str(BIN / "a4c"), "up", "--state-dir", str(state), "--port", str(ports.free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), f"one message:\n{done.stderr}"
    assert f"no Docker daemon answers at {DEFAULT_SOCKET}" in errors[0], errors[0]
    assert missing in errors[0], errors[0]
    assert "  Docker daemon … failed" in done.stdout and not STEP.findall(done.stdout), f"it failed at the first stage:\n{done.stdout}"
    assert not list(state.glob("run/*.pid")) and not list(state.glob("logs/*")), "no component was started"
    assert _processes_mentioning(state) == []


def _write_config(home: pathlib.Path, **sections: dict) -> pathlib.Path:
    path = home / "a4c-up.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def _rows(url: str, sql: str) -> list[tuple]:
    async def fetch() -> list[tuple]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return postgres_server.run_async(fetch)


def _topics(bootstrap: str) -> set[str]:
    async def names() -> set[str]:
        client = kafka_admin.AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await client.start()
        try:
            return set(await client.list_topics())
        finally:
            await client.close()

    return asyncio.run(names())


def _es(method: str, url: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url, method=method, data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def test_a4c_up_with_a_config_file_uses_the_external_postgresql_kafka_and_elasticsearch_and_ctrl_c_stops_it(
    home, make_database, kafka_bootstrap, elasticsearch_url, topic_prefix, docker_host, base_image
):
    database = make_database()
    alias = f"{topic_prefix.lower()}-jobs"
    config = _write_config(
        home,
        database={"url": database},
        kafka={"bootstrap_servers": [kafka_bootstrap], "topic_prefix": topic_prefix},
        search={"elasticsearch_url": elasticsearch_url, "index_alias": alias, "shards": 1, "replicas": 0},
    )
    up = Up(home, ports.free_port(), {"DOCKER_HOST": docker_host}, "--config", str(config))
    try:
        text = up.start()
        assert STEP.findall(text) == [
            "Docker daemon",
            "database migrations",
            "first admin token",
            f"control plane on http://127.0.0.1:{up.port}",
            "admin token accepted",
            "enrolment token for the local agent",
            "local agent",
        ], f"no embedded PostgreSQL or broker among the stages:\n{text}"
        assert not (up.state / "postgres").exists() and not (up.state / "logs" / "kafka.log").exists()
        up.env.update(A4C_SERVER=f"http://127.0.0.1:{up.port}", A4C_TOKEN=(up.state / "admin.token").read_text().strip())

        # The harness database holds the system's state: migrated, the admin, the local agent's host.
        assert _rows(database, "SELECT name, role::text FROM users") == [("admin", "admin")]
        assert _rows(database, "SELECT name, status::text FROM hosts") == [(socket.gethostname(), "active")]
        # The harness broker carries its messages: the agent reports on the configured prefix's topics.
        assert f"{topic_prefix}.events" in _topics(kafka_bootstrap)

        marker = f"nospace{uuid.uuid4().hex[:8]}"
        dockerfile = home / "Dockerfile"
        dockerfile.write_text(f"FROM {base_image}\nRUN echo {marker} && false\n")
        up.a4c("images", "register", "broken", "--dockerfile", str(dockerfile))
        assert up.a4c("images", "build", "broken", "--follow", "--timeout", "120", check=False).returncode == 1
        [(job_id, status)] = _rows(database, "SELECT id::text, status::text FROM jobs WHERE kind = 'image_build'")
        assert status == "failed"

        def answered_by_elasticsearch() -> dict | None:
            found = json.loads(up.a4c("-o", "json", "jobs", "search", f"status:failed {marker}").stdout)
            return found if found["backend"] == "elasticsearch" and [j["id"] for j in found["jobs"]] == [job_id] else None

        found = wait.wait_until(answered_by_elasticsearch, timeout=30, interval=0.5, message="the failed build, found by Elasticsearch")
        assert found["degraded"] is False
        hits = _es("POST", f"{elasticsearch_url}/{alias}/_search", {"query": {"match_all": {}}})["hits"]["hits"]
        assert job_id in [h["_id"] for h in hits], "the job's document is in the harness's Elasticsearch"

        stopped = up.ctrl_c(deadline=45)
        assert stopped.code == 0 and stopped.output.rstrip().endswith("stopped"), stopped.output
        below = stopped.below
        assert any("a4c-controlplane run" in line for line in below) and any("a4c-agent run" in line for line in below), below
        assert not any("postgres -D" in line or "tansu" in line for line in below), below
        assert stopped.left == []
    finally:
        up.stop()
        for path in (f"{alias}-*", f"_index_template/{alias}"):
            try:
                _es("DELETE", f"{elasticsearch_url}/{path}")
            except OSError:
                pass


def test_a4c_up_with_a_docker_host_that_does_not_answer_says_so_and_uses_no_other_daemon(home):
    # The harness's own daemon answers at the default socket or not; either way
    # a DOCKER_HOST named explicitly is the only one a4c up may use.
    state = home / "state"
    dead = f"unix://{home / 'nothing-listens-here.sock'}"
    env = {**os.environ, "DOCKER_HOST": dead, "XDG_CONFIG_HOME": str(home / "config")}
    done = subprocess.run(
        [str(BIN / "a4c"), "up", "--state-dir", str(state), "--port", str(ports.free_port())], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert (
        len(errors) == 1
        and errors[0]
        == f"error: DOCKER_HOST={dead} does not answer: start that daemon, or unset DOCKER_HOST "
        "to use this machine's (a4c up starts one when none answers and it runs as root)"
    ), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (state / "docker").exists(), "it started no dockerd of its own"
    assert _processes_mentioning(state) == []


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def test_a4c_up_starts_its_own_dockerd_when_none_answers_and_ctrl_c_stops_it(home, no_daemon, make_database, kafka_bootstrap, topic_prefix):
    if os.geteuid() != 0 or shutil.which("dockerd") is None or shutil.which("ip") is None:
        pytest.skip("needs root, dockerd and ip: the case where a4c up may start its own daemon")
    # External PostgreSQL and broker only to keep this short; the embedded ones are the end-to-end test's.
    config = _write_config(home, database={"url": make_database()}, kafka={"bootstrap_servers": [kafka_bootstrap], "topic_prefix": topic_prefix})
    had_docker0 = _link_exists("docker0")  # a dockerd without --bridge creates it; ours must not outlive the test
    up = Up(home, ports.free_port(), {"DOCKER_HOST": no_daemon}, "--config", str(config))
    own = f"unix://{up.state / 'docker' / 'docker.sock'}"
    try:
        text = up.start()
        assert "Docker daemon" in STEP.findall(text), text
        assert embedded.docker_answers(own), "its own dockerd answers on a socket in the state directory"
        agent = yaml.safe_load((up.state / "agent.yaml").read_text())
        assert agent["docker"]["base_url"] == own, "the local agent uses it"

        stopped = up.ctrl_c(deadline=45)
        assert stopped.code == 0 and stopped.output.rstrip().endswith("stopped"), stopped.output
        below = stopped.below
        assert any(line.startswith(shutil.which("dockerd")) and str(up.state) in line for line in below), below
        assert stopped.left == [], "dockerd (and its containerd) stopped with it"
        assert not embedded.docker_answers(own)
    finally:
        up.stop()
        if not had_docker0 and _link_exists("docker0"):
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True)
