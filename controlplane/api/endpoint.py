"""Declaring an endpoint once: route, schemas, auth, transaction, idempotency, rendering.

A view is ``async def view(call: Call) -> ResponseModel`` decorated with
``routes.get/post/patch/delete(path, response=..., body=..., query=...)``. The
decorator records an :class:`Endpoint`; the app registers it with aiohttp and
the OpenAPI document is generated from the same records, so what is validated,
what is rendered and what is documented cannot drift apart.

The wrapper around a view:

* parses path ids (``{..._id}`` are UUIDs; aiohttp only matches UUID-shaped
  segments, so anything else is a 404), the query (unknown parameters → 422)
  and the JSON body (strict; unknown fields → 422; not JSON, or nested deeper
  than ``http.max_json_depth`` → 400; another Content-Type than JSON → 415;
  not received within ``http.body_timeout`` → 408);
* gives reads a session on the autocommit engine, and writes one transaction
  in which the view's changes, their jobs and outbox rows, and the
  ``Idempotency-Key`` record all commit together (see :mod:`.idempotency`);
* renders the returned model with the declared status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import typing
import uuid

import orjson
import pydantic
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane import errors
from controlplane import settings as cp_settings
from controlplane.api import auth, idempotency, keys, shedding
from controlplane.api.schemas import common
from controlplane.services import access

Auth = typing.Literal["public", "user", "admin"]
Handler = typing.Callable[["Call"], typing.Awaitable[typing.Any]]

UUID_SEGMENT = common.UUID_PATTERN


class Call:
    """Everything a view gets: the parsed request, who asks, and the session to use.

    For reads the session is opened on first use, so endpoints that never
    touch the database (/healthz, /v1/me) do not pay for one.
    """

    def __init__(
        self,
        request: web.Request,
        settings: cp_settings.Settings,
        principal: access.Principal | None,
        session: sa_asyncio.AsyncSession | sa_asyncio.async_sessionmaker,
        params: dict[str, uuid.UUID],
        query: typing.Any = None,
        body: typing.Any = None,
        standalone: bool = False,
    ) -> None:
        self.request = request
        self.settings = settings
        self.principal = principal
        self.params = params
        self.query = query
        self.body = body
        self._session = session if isinstance(session, sa_asyncio.AsyncSession) else None
        self._sessions = None if isinstance(session, sa_asyncio.AsyncSession) else session
        self.committed: list[typing.Callable[[], None]] = []
        # Whether nothing else must commit with the view's changes (no Idempotency-Key record): a view may then
        # write in statements that each stand alone, in autocommit (a create, see controlplane/services/workspaces.py),
        # and spare the BEGIN and COMMIT round trips.
        self.standalone = standalone

    def after_commit(self, action: typing.Callable[[], None]) -> None:
        """Run ``action`` once the write's transaction has committed (not at all if it rolls back).

        For in-process caches: forgetting a revoked token before the commit would let a lookup in between
        read the old row and remember it again (controlplane/api/auth.py).
        """
        self.committed.append(action)

    @property
    def opened(self) -> bool:
        """Whether :attr:`session` was opened (a write's transaction began: it has something to commit)."""
        return self._session is not None

    @property
    def session(self) -> sa_asyncio.AsyncSession:
        if self._session is None:
            assert self._sessions is not None
            self._session = self._sessions()
        return self._session

    async def close(self) -> None:
        """Close a session this call opened itself (a transaction's session belongs to its owner)."""
        if self._sessions is not None and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def user(self) -> access.Principal:
        assert self.principal is not None, "an authenticated endpoint always has a principal"
        return self.principal

    def page_size(self) -> int:
        asked = getattr(self.query, "limit", None)
        api = self.settings.api
        return min(asked or api.page_size, api.max_page_size)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    name: str
    summary: str
    description: str
    tag: str
    status: int
    response: type[pydantic.BaseModel] | None
    body: type[pydantic.BaseModel] | None
    query: type[pydantic.BaseModel] | None
    auth: Auth
    write: bool
    secret: bool
    errors: tuple[int, ...]
    raw: bool
    rate_limited: bool
    # A blocking read (controlplane/api/watches.py): with ?index= it waits under the watch limits, not its route class's cap.
    watchable: bool = False
    # Reads through controlplane/db/hot.py only, never the SQLAlchemy session: no session to close, no retry for it.
    hot: bool = False

    @functools.cached_property
    def route_class(self) -> str | None:
        """Its concurrency class (controlplane/api/shedding.py), worked out once rather than per request."""
        return shedding.route_class(self)

    @property
    def aiohttp_path(self) -> str:
        path = self.path
        for name in self.path_params:
            path = path.replace("{" + name + "}", "{" + name + ":" + UUID_SEGMENT + "}")
        return path

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{") and part.endswith("}")]

    def error_statuses(self) -> list[int]:
        found = set(self.errors)
        if self.body is not None:
            found |= {400, 413, 415, 422}
        if self.query is not None:
            found.add(422)
        if self.write:
            found |= {408, 409, 422}
        if self.auth != "public":
            found.add(401)
        if self.auth == "admin":
            found.add(403)
        if self.path_params:
            found.add(404)
        if self.rate_limited:
            found.add(429)
        if not self.raw:
            found.add(503)
        return sorted(found)


class Routes:
    """The endpoints of one views module."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def get(self, path: str, **kw: typing.Any) -> typing.Callable[[Handler], Handler]:
        return self._route("GET", path, **kw)

    def post(self, path: str, **kw: typing.Any) -> typing.Callable[[Handler], Handler]:
        return self._route("POST", path, **kw)

    def patch(self, path: str, **kw: typing.Any) -> typing.Callable[[Handler], Handler]:
        return self._route("PATCH", path, **kw)

    def delete(self, path: str, **kw: typing.Any) -> typing.Callable[[Handler], Handler]:
        return self._route("DELETE", path, **kw)

    def _route(
        self,
        method: str,
        path: str,
        *,
        response: type[pydantic.BaseModel] | None,
        status: int = 200,
        body: type[pydantic.BaseModel] | None = None,
        query: type[pydantic.BaseModel] | None = None,
        auth: Auth = "user",
        secret: bool = False,
        errors: tuple[int, ...] = (),
        raw: bool = False,
        rate_limited: bool = True,
        watchable: bool = False,
        hot: bool = False,
        summary: str | None = None,
    ) -> typing.Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            doc = (handler.__doc__ or "").strip()
            first, _, rest = doc.partition("\n")
            self.endpoints.append(
                Endpoint(
                    method=method,
                    path=path,
                    handler=handler,
                    name=handler.__name__,
                    summary=summary or first.strip(),
                    description=rest.strip(),
                    tag=self.tag,
                    status=status,
                    response=response,
                    body=body,
                    query=query,
                    auth=auth,
                    write=method != "GET",
                    secret=secret,
                    errors=errors,
                    raw=raw,
                    rate_limited=rate_limited,
                    watchable=watchable,
                    hot=hot,
                )
            )
            return handler

        return register


def _no_session() -> typing.NoReturn:
    raise AssertionError("a hot read (Endpoint.hot) has no SQLAlchemy session")


_NO_SESSION = typing.cast(sa_asyncio.async_sessionmaker, _no_session)


def handler_for(endpoint: Endpoint) -> typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app
        settings = app[keys.SETTINGS]
        principal = request.get(keys.PRINCIPAL)
        if endpoint.auth == "admin":
            access.require_admin(typing.cast(access.Principal, principal))
        params = {name: uuid.UUID(value) for name, value in request.match_info.items()}
        query = parse_query(endpoint.query, request) if endpoint.query is not None else None
        if endpoint.body is not None:
            require_json(request)
        raw = await read_body(request, settings.http.body_timeout) if endpoint.write or endpoint.body is not None else b""
        body = parse_body(endpoint.body, raw, max_depth=settings.http.max_json_depth) if endpoint.body is not None else None
        if endpoint.write:
            return await _in_transaction(endpoint, request, settings, principal, params, query, body, raw)
        if endpoint.hot:
            return render(endpoint, await endpoint.handler(Call(request, settings, principal, _NO_SESSION, params, query)))
        for attempt in range(2):
            call = Call(request, settings, principal, app[keys.READ_SESSIONS], params, query, body)
            try:
                result = await endpoint.handler(call)
                break
            except sa.exc.DBAPIError as exc:
                # The read pool does not pre-ping: a connection the server
                # dropped (restart, failover) fails once, SQLAlchemy invalidates
                # the pool, and the read — safe to repeat — runs again.
                if attempt or not exc.connection_invalidated:
                    raise
            finally:
                await call.close()
        return result if endpoint.raw else render(endpoint, result)

    handle.endpoint = endpoint  # type: ignore[attr-defined]
    return handle


async def _in_transaction(
    endpoint: Endpoint,
    request: web.Request,
    settings: cp_settings.Settings,
    principal: access.Principal | None,
    params: dict[str, uuid.UUID],
    query: typing.Any,
    body: typing.Any,
    raw: bytes,
) -> web.StreamResponse:
    key = request.headers.get(idempotency.HEADER)
    if key is not None:
        idempotency.validate(key)
    owner = principal.key if principal is not None else "anon:" + auth.client_address(request, settings.rate_limit)
    # The write's session opens on first use and commits at the end: a view that writes only in statements
    # of its own (Call.standalone) pays for no transaction, not even an empty one.
    call = Call(request, settings, principal, request.app[keys.SESSIONS], params, query, body, standalone=key is None)
    try:
        if key is not None:
            replay = await idempotency.claim(
                call.session,
                principal=owner,
                key=key,
                method=request.method,
                path=request.path_qs,
                digest=idempotency.request_hash(request.method, request.path_qs, raw),
            )
            if replay is not None:
                await call.session.commit()
                return _json(replay.status, replay.body, {idempotency.REPLAYED_HEADER: "true"})
        result = await endpoint.handler(call)
        response = render(endpoint, result)
        if key is not None:
            await idempotency.record(
                call.session,
                principal=owner,
                key=key,
                status=response.status,
                body=result.model_dump(mode="json") if result is not None else None,
                secret=endpoint.secret,
            )
        if call.opened:
            await call.session.commit()
    finally:
        await call.close()  # rolls back what was not committed
    # Committed: what waited on it (forgetting a revoked token) runs now, before the answer goes out.
    for action in call.committed:
        action()
    return response


def parse_query(model: type[pydantic.BaseModel], request: web.Request) -> pydantic.BaseModel:
    if not request.query_string and model.model_config.get("frozen"):
        return _empty_query(model)  # a hot read's usual case: its defaults, validated once
    values: dict[str, str | list[str]] = {}
    lists = common.repeatable(model)
    for name in request.query:
        found = request.query.getall(name)
        if len(found) > 1 and name not in lists:
            raise errors.Invalid.field(name, "give this parameter once")
        values[name] = found if name in lists else found[0]
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise invalid(exc, unknown="unknown query parameter") from None


@functools.cache
def _empty_query(model: type[pydantic.BaseModel]) -> pydantic.BaseModel:
    return model.model_validate({})


def require_json(request: web.Request) -> None:
    """415 unless the body is declared JSON (application/json or a +json type; any charset)."""
    kind = request.content_type  # "application/octet-stream" when the header is absent
    if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
        given = request.headers.get("Content-Type")
        raise errors.UnsupportedMediaType(
            f"send the body as JSON with 'Content-Type: application/json', not {given!r}"
            if given
            else "send the body as JSON with 'Content-Type: application/json'",
            fields=[errors.FieldError("Content-Type", "expected application/json")],
        )


async def read_body(request: web.Request, timeout: float) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise errors.RequestTimeout(
            f"the request body did not arrive within {timeout:g}s", fields=[errors.FieldError("body", f"not received within {timeout:g}s")]
        ) from None


def parse_body(model: type[pydantic.BaseModel], raw: bytes, *, max_depth: int = 64) -> pydantic.BaseModel:
    if not raw.strip():
        raise errors.Malformed("this request needs a JSON body", fields=[errors.FieldError("body", "missing")])
    too_deep = errors.Malformed(
        f"the body nests arrays and objects deeper than {max_depth} levels",
        fields=[errors.FieldError("body", f"nested deeper than {max_depth} levels")],
    )
    try:
        data = json.loads(raw, parse_float=_json_number)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Malformed(f"the body is not valid JSON: {exc}", fields=[errors.FieldError("body", "not valid JSON")]) from None
    if depth(data, stop=max_depth) > max_depth:
        raise too_deep
    try:
        # Strict (no "5" for 5), in JSON mode (enums and UUIDs as strings);
        # re-encoded so that 5.0, the same JSON number as 5, is an integer.
        return model.model_validate_json(json.dumps(data), strict=True)
    except pydantic.ValidationError as exc:
        raise invalid(exc, unknown="unknown field") from None


def depth(value: typing.Any, *, stop: int) -> int:
    """Nesting depth of arrays and objects in parsed JSON (a scalar is 0), without recursion; counting stops past ``stop``."""
    deepest = 0
    todo: list[tuple[typing.Any, int]] = [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            level += 1
            deepest = max(deepest, level)
            if deepest > stop:
                return deepest
            todo.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _json_number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def invalid(exc: pydantic.ValidationError, *, unknown: str) -> errors.DomainError:
    problems: list[errors.FieldError] = []
    for err in exc.errors(include_url=False, include_input=False):
        if err["type"] == "json_invalid":
            return errors.Malformed(f"the body is not valid JSON: {err['msg']}", fields=[errors.FieldError("body", "not valid JSON")])
        # Cross-field rules (schemas.common.exactly_one) name their field in the context.
        path = ".".join(str(part) for part in err["loc"]) or err.get("ctx", {}).get("field") or "body"
        reason = unknown if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        problems.append(errors.FieldError(path, reason))
    message = "; ".join(f"{p.path}: {p.reason}" for p in problems[:3])
    if len(problems) > 3:
        message += f"; and {len(problems) - 3} more"
    return errors.Invalid(message, fields=problems)


class Document(dict[str, typing.Any]):
    """A view's answer already shaped as its declared response model renders it (a hot read, see
    controlplane/services/workspace_read.py): encoded with orjson as it is, no model built or validated.
    ``index``, when given, is sent as the X-A4C-Index header (the object's version, for blocking reads)."""

    index: int | None = None

    def __init__(self, data: typing.Mapping[str, typing.Any], *, index: int | None = None) -> None:
        super().__init__(data)
        if index is not None:
            self.index = index


INDEX_HEADER = "X-A4C-Index"


# As pydantic renders: UTC datetimes end in "Z", UUIDs are strings; non-string keys are errors.
_ORJSON = orjson.OPT_UTC_Z


def render(endpoint: Endpoint, result: typing.Any) -> web.Response:
    if endpoint.response is None:
        return web.Response(status=endpoint.status)
    if type(result) is Document:
        headers = None if result.index is None else {INDEX_HEADER: str(result.index)}
        return web.Response(body=orjson.dumps(result, option=_ORJSON), status=endpoint.status, content_type="application/json", headers=headers)
    if not isinstance(result, endpoint.response):
        raise TypeError(f"{endpoint.name} returned {type(result).__name__}, declared {endpoint.response.__name__}")
    return web.Response(body=result.model_dump_json().encode(), status=endpoint.status, content_type="application/json")


def _json(status: int, body: typing.Any, headers: dict[str, str] | None = None) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.json_response(body, status=status, headers=headers)
