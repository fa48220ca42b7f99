"""The control-plane units run the real control plane and search sync under their sandbox on a systemd server.

One server (tests/packaging/servers.py) gets ``a4c[controlplane]`` from the
wheel built from this checkout into /opt/a4c-controlplane/releases/<version>
(``current`` pointing at it, as ansible/roles/a4c_release leaves it), the config in
/etc/a4c, the user a4c-controlplane and the two units from packaging/systemd,
installed as docs/operations/systemd.md says. PostgreSQL, the broker and the
Elasticsearch-API server are the harness's, reached on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import pathlib
import re
import tarfile
import typing
import urllib.error
import urllib.request

import pytest
import yaml

from tests.harness import ports, wait
from tests.packaging import servers as servers_mod
from tests.packaging import units

# The first run on a machine also debootstraps the server image (4-5 minutes).
pytestmark = [pytest.mark.docker, pytest.mark.kafka, pytest.mark.search, pytest.mark.timeout(900)]

WHEELHOUSE = "/srv/a4c-wheelhouse"
DIST = "/srv/a4c-dist"


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# One database for the module: one systemd host running the units serves every test.
@pytest.fixture(scope="module")
def server(
    tmp_path_factory,
    docker_client,
    docker_host,
    test_labels,
    test_run_id,
    systemd_host_image,
    a4c_wheel: pathlib.Path,
    controlplane_wheelhouse: pathlib.Path,
    module_database_url: str,
    kafka_bootstrap: str,
    elasticsearch_url: str,
) -> typing.Iterator[tuple[servers_mod.Server, int, str, dict]]:
    workdir = tmp_path_factory.mktemp("cp-units")
    fleet = servers_mod.Fleet(
        docker_client,
        systemd_host_image,
        workdir,
        test_labels,
        servers_mod.socket_path(docker_host),
        mounts={str(controlplane_wheelhouse): WHEELHOUSE, str(a4c_wheel.parent): DIST},
    )
    try:
        (server,) = fleet.start([f"cp-{test_run_id[-4:]}"])
        port, sync_port = ports.free_port(), ports.free_port()
        prefix = f"u{test_run_id[-6:]}"
        config: dict[str, typing.Any] = {
            "http": {"host": "127.0.0.1", "port": port},
            "database": {"url": module_database_url},
            "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": prefix},
            "search": {
                "elasticsearch_url": elasticsearch_url,
                "sync_in_process": False,
                "index_alias": f"jobs-{prefix}",
                "shards": 1,
                "replicas": 0,
                "sync_metrics_port": sync_port,
            },
        }
        version = a4c_wheel.name.split("-")[1]
        server.sh(
            "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin a4c-controlplane"
            f" && python3 -m venv /opt/a4c-controlplane/releases/{version}"
            f" && /opt/a4c-controlplane/releases/{version}/bin/pip install --quiet --no-index --find-links {WHEELHOUSE} --find-links {DIST}"
            f" 'a4c[controlplane]=={version}'"
            f" && ln -s releases/{version} /opt/a4c-controlplane/current"
            " && install -d -m 0755 /etc/a4c"
        )
        server.container.put_archive("/etc/a4c", _tar({"controlplane.yaml": (yaml.safe_dump(config).encode(), 0o640)}))
        server.sh("chgrp a4c-controlplane /etc/a4c/controlplane.yaml")
        unit_files = {p.name: (p.read_bytes(), 0o644) for p in units.unit_files() if p.name != "a4c-agent.service"}
        server.container.put_archive("/etc/systemd/system", _tar(unit_files))
        server.sh("systemctl daemon-reload")
        yield server, port, config["search"]["index_alias"], config
    finally:
        problems = fleet.close()
        assert not problems, f"test server could not be removed: {problems}"


def _process(server: servers_mod.Server, unit: str) -> dict[str, str]:
    pid = server.unit_property(unit, "MainPID")
    status = server.sh(f"cat /proc/{pid}/status")
    fields = {
        key: re.search(rf"^{field}:\s+(\w+)", status, re.M)
        for key, field in (("uid", "Uid"), ("capabilities", "CapEff"), ("no_new_privs", "NoNewPrivs"))
    }
    fields["open_files"] = re.search(r"^Max open files\s+(\d+)", server.sh(f"cat /proc/{pid}/limits"), re.M)
    assert all(fields.values()), status
    return {key: found.group(1) for key, found in fields.items() if found}


def _readyz(port: int) -> str:
    """The status line and body of /readyz, or why there was none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return f"{response.status} {response.read().decode()}"
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read().decode()}"
    except (urllib.error.URLError, OSError) as error:
        return f"no answer: {error}"


def test_the_control_plane_unit_starts_serves_and_stops_cleanly_under_its_sandbox(server) -> None:
    host, port, _, _ = server
    # Type=notify: start returns once the daemon sent READY=1.
    host.sh("systemctl start a4c-controlplane")
    assert host.sh("systemctl is-active a4c-controlplane").strip() == "active"
    ready = _readyz(port)
    assert ready.startswith("200 "), f"/readyz: {ready}\n{host.sh('journalctl -u a4c-controlplane --no-pager -n 30 -o cat')}"
    unit = units.parse((units.UNITS_DIR / "a4c-controlplane.service").read_text())["Service"]
    assert _process(host, "a4c-controlplane") == {
        "uid": host.sh("id -u a4c-controlplane").strip(),
        "capabilities": "0000000000000000",
        "no_new_privs": "1",
        # The descriptor limit takes effect under the sandbox.
        "open_files": unit["LimitNOFILE"][-1],
    }
    # systemd took the OOM preference (lowering oom_score_adj needs CAP_SYS_RESOURCE, which
    # a real host's PID 1 has and this test container's does not, so the effect is not read here).
    assert host.unit_property("a4c-controlplane", "OOMScoreAdjust") == unit["OOMScoreAdjust"][-1]
    watchdog = units.parse((units.UNITS_DIR / "a4c-controlplane.service").read_text())["Service"]["WatchdogSec"][-1]
    assert host.unit_property("a4c-controlplane", "WatchdogUSec") == watchdog, "the watchdog is armed"

    host.sh("systemctl stop a4c-controlplane")
    # A clean exit on SIGTERM, well within TimeoutStopSec: not killed, status 0.
    assert host.unit_property("a4c-controlplane", "Result") == "success"
    assert host.unit_property("a4c-controlplane", "ExecMainStatus") == "0"
    assert _readyz(port).startswith("no answer")


def test_the_search_sync_unit_creates_the_index_and_stops_cleanly_under_its_sandbox(server, elasticsearch_url: str) -> None:
    host, _, alias, config = server
    host.sh("systemctl start a4c-search-sync")

    def aliased() -> bool:
        if host.sh("systemctl is-active a4c-search-sync || true").strip() != "active":
            raise AssertionError(host.sh("journalctl -u a4c-search-sync --no-pager -n 20 -o cat"))
        try:
            with urllib.request.urlopen(f"{elasticsearch_url}/_alias/{alias}", timeout=2) as response:
                return response.status == 200 and bool(json.loads(response.read()))
        except (urllib.error.URLError, OSError):
            return False

    wait.wait_until(aliased, timeout=60, interval=0.2, message=f"the sync worker created the index behind {alias}")
    assert _process(host, "a4c-search-sync")["capabilities"] == "0000000000000000"
    # Type=notify and its watchdog: the worker said READY=1 and pings.
    watchdog = units.parse((units.UNITS_DIR / "a4c-search-sync.service").read_text())["Service"]["WatchdogSec"][-1]
    assert host.unit_property("a4c-search-sync", "WatchdogUSec") == watchdog, "the watchdog is armed"
    assert host.unit_property("a4c-search-sync", "NRestarts") == "0", "no watchdog restart"
    # Its own listener: health, and the sync metrics that are not on any API's /metrics when it runs apart.
    sync_port = config["search"]["sync_metrics_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{sync_port}/healthz", timeout=5) as response:
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
    with urllib.request.urlopen(f"http://127.0.0.1:{sync_port}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    assert re.search(r"^# TYPE a4c_search_sync_\w+", exposition, re.M), exposition[:2000]

    host.sh("systemctl stop a4c-search-sync")
    assert host.unit_property("a4c-search-sync", "Result") == "success"
    assert host.unit_property("a4c-search-sync", "ExecMainStatus") == "0"
    assert "sync stopped" in host.sh("journalctl -u a4c-search-sync --no-pager -o cat")
