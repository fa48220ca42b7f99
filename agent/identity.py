"""The agent's identity (host id + signing key) and how it gets one: enrolment.

Errors::

    IdentityError          identity.json exists but cannot be used
    EnrolmentError         enrolment failed for good (no token, token refused)

On first start the agent posts its enrolment token to the control plane::

    POST {agent.control_plane_url}/v1/agents/enrol
    {"token": str, "host_name": str, "labels": {...},
     "capacity": {"cpus": float, "memory_mb": int, "disk_bytes": int},
     "agent_version": str}
    -> 201 {"host_id": str, "key": str}
    -> 401/403 {"error": {"code": ..., "message": ...}}   bad or revoked token

and stores the answer in ``<state_dir>/identity.json``, mode 0600::

    {"host_id": "h-…", "key": "<urlsafe base64>", "host_name": "…", "enrolled_at": "2024-…Z"}

Later starts reuse that file and never call the control plane again. Tests
(and operators restoring a host) may write the file themselves.

A control plane that is down or answers 5xx is retried with backoff until it
answers; a refused token is final (the operator must issue a new one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import json
import logging
import os
import pathlib
import urllib.error
import urllib.parse
import urllib.request

import pydantic

from agent import settings as agent_settings
from shared.domain import backoff

log = logging.getLogger(__name__)

FILENAME = "identity.json"


class IdentityError(Exception):
    """identity.json is present but unreadable or malformed."""


class EnrolmentError(Exception):
    """Enrolment cannot succeed without an operator (missing or refused token)."""


class _Transient(Exception):
    """The control plane could not be reached or failed; try again later."""


class Identity(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    host_id: str = pydantic.Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    key: str = pydantic.Field(min_length=16)
    host_name: str = ""
    enrolled_at: str = ""


@dataclasses.dataclass(frozen=True)
class Capacity:
    cpus: float
    memory_mb: int
    disk_bytes: int


def path_in(state_dir: str) -> pathlib.Path:
    return pathlib.Path(state_dir) / FILENAME


def load(state_dir: str) -> Identity | None:
    path = path_in(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        identity = Identity.model_validate(json.loads(text))
    except (ValueError, pydantic.ValidationError) as exc:
        raise IdentityError(f"{path}: not a valid identity file (want host_id and key): {str(exc).splitlines()[0]}") from exc
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        # The key is a credential: tighten rather than refuse, and say so.
        log.warning("identity file was readable by others; fixed its mode to 0600", extra={"path": str(path)})
        path.chmod(0o600)
    return identity


def save(state_dir: str, identity: Identity) -> pathlib.Path:
    """Write identity.json atomically with mode 0600 (never readable by others, even briefly)."""
    directory = pathlib.Path(state_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / FILENAME
    tmp = directory / f".{FILENAME}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(identity.model_dump(), indent=2).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    return final


async def load_or_enrol(
    settings: agent_settings.Settings,
    *,
    capacity: Capacity,
    agent_version: str,
    host_name: str,
    stop: asyncio.Event | None = None,
) -> Identity:
    existing = load(settings.agent.state_dir)
    if existing is not None:
        return existing
    problem = insecure_enrolment(settings.agent.control_plane_url, allowed=settings.agent.allow_insecure_enrolment)
    if problem:
        raise EnrolmentError(problem)
    token = enrolment_token(settings)
    if not token:
        raise EnrolmentError(f"agent.enrolment_token: required on first start (no {path_in(settings.agent.state_dir)} yet)")
    body = {
        "token": token,
        "host_name": host_name,
        "labels": dict(settings.agent.labels),
        "capacity": dataclasses.asdict(capacity),
        "agent_version": agent_version,
    }
    url = settings.agent.control_plane_url.rstrip("/") + "/v1/agents/enrol"
    delays = backoff.exponential(1.0, settings.kafka.retry_backoff_max)
    while True:
        try:
            answer = await asyncio.to_thread(_post, url, body, settings.kafka.request_timeout)
            break
        except _Transient as exc:
            delay = delays.next()
            log.warning("enrolment: control plane unavailable, retrying", extra={"url": url, "error": str(exc), "retry_in_s": round(delay, 2)})
            if stop is not None:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    raise EnrolmentError("enrolment interrupted by shutdown")
                except TimeoutError:
                    continue
            await asyncio.sleep(delay)
    try:
        identity = Identity(
            host_id=answer["host_id"],
            key=answer["key"],
            host_name=host_name,
            enrolled_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
    except (KeyError, TypeError, pydantic.ValidationError) as exc:
        raise EnrolmentError(f"enrolment: the control plane's answer lacks a valid host_id/key ({exc.__class__.__name__})") from exc
    path = save(settings.agent.state_dir, identity)
    log.info("enrolled", extra={"host_id": identity.host_id, "identity_file": str(path)})
    return identity


def enrolment_token(settings: agent_settings.Settings) -> str | None:
    """The token from ``agent.enrolment_token_file`` when set, else ``agent.enrolment_token``."""
    if settings.agent.enrolment_token_file:
        try:
            return pathlib.Path(settings.agent.enrolment_token_file).read_text().strip() or None
        except OSError as exc:
            raise EnrolmentError(f"agent.enrolment_token_file: cannot read {settings.agent.enrolment_token_file}: {exc.strerror}") from None
    return settings.agent.enrolment_token


def insecure_enrolment(url: str, *, allowed: bool) -> str | None:
    """Why enrolling at ``url`` would send the host's new key in clear text over a network, or None.

    The enrolment answer carries the host's signing key: over plain HTTP to
    another machine anyone on the path could take it. Loopback is fine (a
    local control plane, or a TLS-terminating proxy on this machine).
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or allowed:
        return None
    host = (parsed.hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (
        f"agent.control_plane_url: {url} is plain http:// to another machine, and enrolment returns this host's signing key; "
        "use https:// (or set agent.allow_insecure_enrolment: true on a network you trust)"
    )


def _post(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise _Transient(str(getattr(exc, "reason", exc))) from exc
    if status >= 500 or status in (408, 429):
        raise _Transient(f"HTTP {status}")
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        data = {}
    if status in (200, 201) and isinstance(data, dict):
        return data
    message = ""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        message = f"{err.get('code', '')}: {err.get('message', '')}".strip(": ")
    raise EnrolmentError(f"enrolment refused by the control plane (HTTP {status}){': ' + message if message else ''}")
