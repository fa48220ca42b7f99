"""Enrolment: the first start trades the token for a host id and key (stored 0600); later starts reuse them.

The control plane is played by a small aiohttp server in the test (a real
HTTP server on loopback), speaking the contract in agent/identity.py.
"""

from __future__ import annotations

import json
import pathlib
import stat
import subprocess
import typing

import pytest
from aiohttp import web

from agent import identity
from agent import settings as agent_settings
from tests.agent import driver
from tests.harness import ports

CAPACITY = identity.Capacity(cpus=2.0, memory_mb=4096, disk_bytes=10**11)


class FakeControlPlane:
    """Answers POST /v1/agents/enrol from a script of (status, body) replies; records the requests."""

    def __init__(self, replies: list[tuple[int, dict]]) -> None:
        self.replies = replies
        self.requests: list[dict] = []
        self.port = ports.free_port()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeControlPlane:
        app = web.Application()
        app.router.add_post("/v1/agents/enrol", self._enrol)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: typing.Any) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _enrol(self, request: web.Request) -> web.Response:
        self.requests.append(await request.json())
        status, body = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return web.json_response(body, status=status)


def _settings(tmp_path: pathlib.Path, url: str, token: str | None = "enrol-me") -> agent_settings.Settings:
    return agent_settings.Settings.model_validate(
        {
            "agent": {"control_plane_url": url, "enrolment_token": token, "state_dir": str(tmp_path / "state"), "labels": {"rack": "r7"}},
            "kafka": {"retry_backoff_max": 0.2},
        }
    )


async def test_first_start_enrols_and_stores_the_identity_with_mode_0600(tmp_path: pathlib.Path) -> None:
    async with FakeControlPlane([(201, {"host_id": "h-123", "key": "k" * 43})]) as cp:
        got = await identity.load_or_enrol(_settings(tmp_path, cp.url), capacity=CAPACITY, agent_version="9.9", host_name="box-1")
    assert (got.host_id, got.key, got.host_name) == ("h-123", "k" * 43, "box-1")
    assert cp.requests == [
        {
            "token": "enrol-me",
            "host_name": "box-1",
            "labels": {"rack": "r7"},
            "capacity": {"cpus": 2.0, "memory_mb": 4096, "disk_bytes": 10**11},
            "agent_version": "9.9",
        }
    ]
    path = tmp_path / "state" / "identity.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["host_id"] == "h-123" and stored["key"] == "k" * 43 and stored["enrolled_at"].endswith("Z")


async def test_a_later_start_reuses_the_stored_identity_without_calling_the_control_plane(tmp_path: pathlib.Path) -> None:
    driver.write_identity(tmp_path / "state", "h-kept", "s" * 43)
    async with FakeControlPlane([(500, {})]) as cp:
        got = await identity.load_or_enrol(_settings(tmp_path, cp.url), capacity=CAPACITY, agent_version="1", host_name="x")
    assert got.host_id == "h-kept" and cp.requests == []


async def test_a_refused_token_is_final_and_says_why(tmp_path: pathlib.Path) -> None:
    refusal = {"error": {"code": "enrolment_token_revoked", "message": "this token was revoked"}}
    async with FakeControlPlane([(401, refusal)]) as cp:
        with pytest.raises(identity.EnrolmentError, match=r"HTTP 401\): enrolment_token_revoked: this token was revoked"):
            await identity.load_or_enrol(_settings(tmp_path, cp.url), capacity=CAPACITY, agent_version="1", host_name="x")
    assert len(cp.requests) == 1
    assert not (tmp_path / "state" / "identity.json").exists()


async def test_a_control_plane_that_is_down_or_failing_is_retried_until_it_answers(tmp_path: pathlib.Path) -> None:
    async with FakeControlPlane([(503, {}), (502, {}), (201, {"host_id": "h-late", "key": "z" * 43})]) as cp:
        got = await identity.load_or_enrol(_settings(tmp_path, cp.url), capacity=CAPACITY, agent_version="1", host_name="x")
    assert got.host_id == "h-late" and len(cp.requests) == 3


async def test_without_a_token_or_identity_the_first_start_names_the_missing_key(tmp_path: pathlib.Path) -> None:
    with pytest.raises(identity.EnrolmentError, match=r"agent.enrolment_token: required on first start"):
        await identity.load_or_enrol(_settings(tmp_path, "http://127.0.0.1:9", token=None), capacity=CAPACITY, agent_version="1", host_name="x")


def test_an_identity_file_readable_by_others_is_tightened(tmp_path: pathlib.Path) -> None:
    driver.write_identity(tmp_path, "h-1", "k" * 43)
    (tmp_path / "identity.json").chmod(0o644)
    assert identity.load(str(tmp_path)).host_id == "h-1"  # type: ignore[union-attr]
    assert stat.S_IMODE((tmp_path / "identity.json").stat().st_mode) == 0o600


def test_a_corrupt_identity_file_is_an_error_naming_the_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "identity.json").write_text('{"host_id": ""}')
    with pytest.raises(identity.IdentityError, match=r"identity.json: not a valid identity file"):
        identity.load(str(tmp_path))


def test_an_agent_that_cannot_enrol_exits_2_with_one_line(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"agent:\n  state_dir: {tmp_path / 'state'}\n  control_plane_url: http://127.0.0.1:{ports.free_port()}\n")
    proc = subprocess.run([str(driver.AGENT_BIN), "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"a4c-agent: agent.enrolment_token: required on first start (no {tmp_path / 'state' / 'identity.json'} yet)"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("url", "allowed", "refused"),
    [
        ("http://cp.example.com:8080", False, True),
        ("http://10.1.2.3:8080", False, True),
        ("http://cp.example.com:8080", True, False),
        ("https://cp.example.com", False, False),
        ("http://127.0.0.1:8080", False, False),
        ("http://127.5.5.5:8080", False, False),
        ("http://localhost:8080", False, False),
        ("http://[::1]:8080", False, False),
    ],
)
def test_plain_http_enrolment_is_refused_unless_the_control_plane_is_on_loopback(url: str, allowed: bool, refused: bool) -> None:
    problem = identity.insecure_enrolment(url, allowed=allowed)
    assert bool(problem) is refused, problem
    if refused:
        assert problem is not None
        assert "agent.control_plane_url" in problem and "https://" in problem


async def test_an_insecure_control_plane_url_is_refused_before_anything_is_sent(tmp_path: pathlib.Path) -> None:
    # Nothing listens at the documentation address: the refusal must come before any request.
    settings = _settings(tmp_path, "http://192.0.2.10:8080")
    with pytest.raises(identity.EnrolmentError, match="allow_insecure_enrolment"):
        await identity.load_or_enrol(settings, capacity=CAPACITY, agent_version="0.1.0", host_name="h")
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())


async def test_the_token_can_come_from_a_file(tmp_path: pathlib.Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    async with FakeControlPlane([(201, {"host_id": "h-file", "key": "k" * 44})]) as cp:
        settings = agent_settings.Settings.model_validate(
            {"agent": {"control_plane_url": cp.url, "enrolment_token_file": str(token_file), "state_dir": str(tmp_path / "state")}}
        )
        got = await identity.load_or_enrol(settings, capacity=CAPACITY, agent_version="0.1.0", host_name="h")
    assert got.host_id == "h-file" and cp.requests[0]["token"] == "from-a-file"
