"""The CLI's HTTP client: synchronous, one request at a time, every failure translated into :mod:`a4c.errors`.

A command makes a handful of requests and then exits, so plain ``urllib`` is
enough: no event loop, no connection pool, nothing to close. Network errors
are turned into one sentence that says which server could not be reached and
why ("connection refused"), never a traceback.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import typing
import urllib.error
import urllib.parse
import urllib.request

from a4c import errors

DEFAULT_TIMEOUT = 30.0  # seconds per request; polling loops have their own --timeout
INDEX_HEADER = "X-A4C-Index"  # an object's index, for blocking reads (a4c/watch.py)
PAGE_SIZE = 500  # the API's default max_page_size: fewest round trips when following cursors


class Client:
    def __init__(self, server: str, token: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, *, body: typing.Any = None, params: typing.Mapping[str, typing.Any] | None = None) -> typing.Any:
        return self.exchange(method, path, body=body, params=params)[0]

    def watch(self, path: str, index: int, wait: float) -> tuple[typing.Any, int]:
        """A blocking read: the object and its index (X-A4C-Index) once it is past ``index``, or after ``wait`` s unchanged."""
        doc, headers = self.exchange("GET", path, params={"index": index, "wait": f"{wait:g}s"}, timeout=wait + self.timeout)
        given = headers.get(INDEX_HEADER)
        return doc, int(given) if given and given.isdigit() else int(doc.get("version") or 0)

    def exchange(
        self,
        method: str,
        path: str,
        *,
        body: typing.Any = None,
        params: typing.Mapping[str, typing.Any] | None = None,
        timeout: float | None = None,
    ) -> tuple[typing.Any, typing.Mapping[str, str]]:
        """The decoded answer and its headers."""
        timeout = self.timeout if timeout is None else timeout
        url = self.server + path
        if params:
            pairs = [(k, _param(v)) for k, v in params.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        headers = {"Accept": "application/json", "User-Agent": "a4c-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return self._decode(resp.status, resp.headers.get("Content-Type", ""), resp.read()), resp.headers
        except urllib.error.HTTPError as exc:
            raise self._api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise errors.Unreachable(f"cannot reach the A4C API at {self.server}: {_why(exc, timeout)}; is it running? (a4c up)") from None
        except http.client.HTTPException as exc:
            raise errors.Unreachable(f"{self.server} did not answer in HTTP ({type(exc).__name__}); is --server right?") from None

    def get(self, path: str, **params: typing.Any) -> typing.Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: typing.Any = None) -> typing.Any:
        return self.request("POST", path, body=body if body is not None else {})

    def delete(self, path: str) -> typing.Any:
        return self.request("DELETE", path)

    def items(self, path: str, *, limit: int | None = None, **params: typing.Any) -> list[dict[str, typing.Any]]:
        """Every item of a paged collection (``{"items", "next_cursor"}``), following cursors, up to ``limit``."""
        found: list[dict[str, typing.Any]] = []
        cursor = None
        while limit is None or len(found) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(found))
            page = self.get(path, limit=size, cursor=cursor, **params)
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found

    def _decode(self, status: int, content_type: str, raw: bytes) -> typing.Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            # Something answers on that port, but not the API (a dashboard, another service, a proxy page).
            raise errors.Unreachable(
                f"{self.server} answered, but not like the A4C API (HTTP {status}, {content_type or 'no content type'}); is --server right?"
            ) from None

    def _api_error(self, exc: urllib.error.HTTPError) -> errors.CliError:
        try:
            detail = json.loads(exc.read()).get("error")
        except (ValueError, AttributeError, OSError):
            detail = None
        if not isinstance(detail, dict) or "message" not in detail:
            # Every API error has the error body; without it, something else answered
            # (a proxy's 502 page, another service's 404): not "not found", not the API at all.
            return errors.Unreachable(
                f"{self.server} answered HTTP {exc.code} {exc.reason or ''} without an A4C error body; "
                "is --server the A4C API, and is it up behind its proxy?"
            )
        return errors.ApiError(
            exc.code,
            str(detail.get("code", exc.code)),
            str(detail["message"]),
            detail.get("fields") or [],
            request_id=exc.headers.get("X-Request-Id") if exc.headers is not None else None,
        )


def _param(value: typing.Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _why(exc: BaseException, timeout: float) -> str:
    """A few words for why a connection failed, without errno numbers."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host name"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionResetError):
        return "the connection was reset"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({reason.reason or reason})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)
