"""The CLI's HTTP client: one request at a time, errors translated into exit codes.

Errors::

    CliError               any failure the CLI reports; ``exit_code`` says which
    ├── ApiError           the API answered with an error body (401, 404, 422, …)
    └── Unreachable        no answer at all (connection refused, DNS, timeout)

Exit codes (documented in docs/cli.md; scripts rely on them)::

    0 ok · 1 the operation failed (job failed, conflict) · 2 usage error
    3 not found · 4 not authenticated / not allowed · 5 server unreachable
    6 invalid input (the API named the bad fields)
"""

from __future__ import annotations

import json
import os
import pathlib
import typing
import urllib.error
import urllib.parse
import urllib.request

import yaml

OK, FAILED, USAGE, NOT_FOUND, AUTH, UNREACHABLE, INVALID = 0, 1, 2, 3, 4, 5, 6

CONFIG = pathlib.Path(os.environ.get("XDG_CONFIG_HOME") or pathlib.Path.home() / ".config") / "a4c" / "config.yaml"


class CliError(Exception):
    exit_code = FAILED


class Unreachable(CliError):
    exit_code = UNREACHABLE


class ApiError(CliError):
    def __init__(self, status: int, code: str, message: str, fields: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields
        self.exit_code = {401: AUTH, 403: AUTH, 404: NOT_FOUND, 400: INVALID, 413: INVALID, 422: INVALID}.get(status, FAILED)

    def __str__(self) -> str:
        if self.status == 401:
            return f"the token was rejected ({self.message}); run: a4c login --server URL --token TOKEN"
        lines = [self.message]
        lines += [f"  {f['path']}: {f['reason']}" for f in self.fields if f.get("path") and f["reason"] not in self.message]
        return "\n".join(lines)


def load_config(path: pathlib.Path = CONFIG) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("server", "token")} if isinstance(data, dict) else {}


def save_config(server: str, token: str, path: pathlib.Path = CONFIG) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"server": server, "token": token}, f)
    path.chmod(0o600)
    return path


class Client:
    def __init__(self, server: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: typing.Any = None, params: typing.Mapping[str, typing.Any] | None = None) -> typing.Any:
        url = self.server + path
        if params:
            pairs = [(k, v) for k, v in params.items() if v is not None]
            url += "?" + urllib.parse.urlencode(pairs, doseq=True)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach the A4C API at {self.server}: {reason}; is it running? (a4c up)") from None

    def get(self, path: str, **params: typing.Any) -> typing.Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: typing.Any = None) -> typing.Any:
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path: str) -> typing.Any:
        return self.request("DELETE", path)


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    try:
        error = json.loads(exc.read()).get("error", {})
    except (ValueError, AttributeError):
        error = {}
    return ApiError(exc.code, error.get("code", str(exc.code)), error.get("message", exc.reason or "error"), error.get("fields") or [])
