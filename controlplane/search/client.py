"""The Elasticsearch client, and its errors translated where they enter.

Errors::

    SearchError            base
    ├── Unavailable        cannot reach Elasticsearch, it timed out, or it answered
    │                      429/5xx: transient, the breaker counts it, retry later
    └── Rejected           it answered 4xx: the request itself is wrong (a bug, or
                           an index whose mappings are not ours)

The client is built with no retries of its own: the sync consumer retries
failed bulk items with backoff, and the search path falls back to PostgreSQL;
a client retrying underneath either would only hide the failure for longer.
"""

from __future__ import annotations

import contextlib
import pathlib
import typing
import urllib.parse

import elasticsearch

from controlplane import settings as cp_settings


class SearchError(Exception):
    """Base of everything this package raises about Elasticsearch."""


class Unavailable(SearchError):
    """Elasticsearch cannot answer right now."""


class Rejected(SearchError):
    """Elasticsearch refused the request (4xx); ``status`` and ``str()`` say why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def create(search: cp_settings.SearchSettings) -> elasticsearch.AsyncElasticsearch:
    if not search.elasticsearch_url:
        raise ValueError("search.elasticsearch_url is not set")
    url = str(search.elasticsearch_url)
    auth: dict[str, typing.Any] = {}
    if search.api_key_file:
        auth["api_key"] = _secret(search.api_key_file, "search.api_key_file")
    if search.ca_file:
        auth["ca_certs"] = search.ca_file
    parts = urllib.parse.urlsplit(url)
    if search.password_file and parts.username:
        # The user stays in the config, the password only in its file; the URL
        # handed on carries neither (the client would otherwise log it).
        auth["basic_auth"] = (urllib.parse.unquote(parts.username), _secret(search.password_file, "search.password_file"))
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return elasticsearch.AsyncElasticsearch(
        url,
        request_timeout=search.request_timeout,
        max_retries=0,
        retry_on_timeout=False,
        **auth,
    )


def _secret(path: str, key: str) -> str:
    try:
        return pathlib.Path(path).read_text().rstrip("\n")
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None


@contextlib.asynccontextmanager
async def translated(what: str) -> typing.AsyncIterator[None]:
    """Run an Elasticsearch call, turning its exceptions into :class:`SearchError`s."""
    try:
        yield
    except elasticsearch.ApiError as exc:
        status = exc.meta.status if exc.meta is not None else 0
        if status == 429 or status >= 500:
            raise Unavailable(f"{what}: Elasticsearch answered {status}: {exc.message}") from exc
        raise Rejected(f"{what}: Elasticsearch answered {status}: {exc.message} {_cause(exc.body)}".rstrip(), status) from exc
    except (elasticsearch.TransportError, OSError) as exc:
        # ConnectionError, ConnectionTimeout, SerializationError of a cut-off body…
        raise Unavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def _cause(body: typing.Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("reason", ""))
    return ""
