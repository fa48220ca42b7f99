"""The OpenAPI 3.1 document, generated from the endpoint declarations and their pydantic models.

Nothing here is written by hand per route: paths, parameters, bodies,
responses and error answers all come from :class:`~controlplane.api.endpoint.Endpoint`
records, the very ones the app registers and validates with, so the document
cannot drift from the behaviour. OpenAPI 3.1 is used because its schema
dialect is JSON Schema 2020-12, which is what pydantic emits.
"""

from __future__ import annotations

import typing

import pydantic
from pydantic import json_schema

from controlplane.api import endpoint, idempotency
from controlplane.api.schemas import common

REF = "#/components/schemas/{model}"

_ERROR_TEXT = {
    400: "The body is not JSON.",
    401: "No token, or an unknown, revoked or expired one.",
    403: "The token's role may not do this.",
    404: "No such object, or not yours.",
    409: "Conflicts with the current state (or an Idempotency-Key replay of a one-time secret).",
    413: "The body is larger than http.max_body_bytes.",
    422: "A field, parameter or header is invalid; `fields` names each one.",
    429: "Rate limited; retry after `Retry-After` seconds.",
    503: "The database is unavailable; retry later.",
}


def build(endpoints: typing.Sequence[endpoint.Endpoint], *, title: str, version: str) -> dict[str, typing.Any]:
    inputs = {m for e in endpoints for m in (e.body, e.query) if m is not None}
    outputs = {e.response for e in endpoints if e.response is not None} | {common.Error}
    wanted: list[tuple[type[pydantic.BaseModel], json_schema.JsonSchemaMode]] = [
        *((m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)),
        *((m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)),
    ]
    keys, definitions = json_schema.models_json_schema(wanted, ref_template=REF)
    components: dict[str, typing.Any] = dict(definitions.get("$defs", {}))
    paths: dict[str, dict[str, typing.Any]] = {}
    for ep in endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, keys, components)
    # Query models are flattened into parameters; they need no component of their own.
    for model in {e.query for e in endpoints if e.query is not None}:
        components.pop(_name(keys[(model, "validation")]), None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "A4C control plane: workspaces, images, schedules, jobs, hosts, users and agent enrolment. "
            'Every error answer is {"error": {"code", "message", "fields": [{"path", "reason"}]}}.',
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token from create-admin or POST /v1/users/{id}/tokens."}
            },
        },
    }


def _name(ref: dict[str, typing.Any]) -> str:
    return ref["$ref"].rsplit("/", 1)[-1]


def _operation(ep: endpoint.Endpoint, keys: dict, components: dict[str, typing.Any]) -> dict[str, typing.Any]:
    op: dict[str, typing.Any] = {
        "operationId": ep.name,
        "summary": ep.summary,
        "tags": [ep.tag],
        "security": [] if ep.auth == "public" else [{"bearer": []}],
        "responses": {},
    }
    if ep.description:
        op["description"] = ep.description + ("\n\nAdmin only." if ep.auth == "admin" else "")
    elif ep.auth == "admin":
        op["description"] = "Admin only."
    params = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid", "pattern": f"^{endpoint.UUID_SEGMENT}$"}}
        for n in ep.path_params
    ]
    if ep.query is not None:
        params += _query_parameters(components[_name(keys[(ep.query, "validation")])])
    if ep.write:
        params.append(
            {
                "name": idempotency.HEADER,
                "in": "header",
                "required": False,
                "description": "Makes a retry return the original answer and create nothing new (on any instance).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x21-\\x7e]+$"},
            }
        )
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": keys[(ep.body, "validation")]}}}
    op["responses"][str(ep.status)] = _success(ep, keys)
    for status in ep.error_statuses():
        answer: dict[str, typing.Any] = {
            "description": _ERROR_TEXT.get(status, "Error."),
            "content": {"application/json": {"schema": keys[(common.Error, "serialization")]}},
        }
        if status == 429:
            answer["headers"] = {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}}}
        op["responses"][str(status)] = answer
    return op


def _success(ep: endpoint.Endpoint, keys: dict) -> dict[str, typing.Any]:
    if ep.raw and ep.path == "/metrics":
        return {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}
    if ep.raw:
        return {"description": "JSON.", "content": {"application/json": {"schema": {"type": "object"}}}}
    if ep.response is None:
        return {"description": "Done; no body."}
    return {"description": ep.summary or "OK.", "content": {"application/json": {"schema": keys[(ep.response, "serialization")]}}}


def _query_parameters(model_schema: dict[str, typing.Any]) -> list[dict[str, typing.Any]]:
    required = set(model_schema.get("required", []))
    params = []
    for name, prop in model_schema.get("properties", {}).items():
        schema = dict(prop)
        description = schema.pop("description", None)
        schema.pop("title", None)
        schema.pop("default", None)
        # "X or null" is how pydantic spells optional; a query parameter is simply absent instead.
        options = schema.get("anyOf")
        if options is not None:
            kept = [o for o in options if o.get("type") != "null"]
            schema.pop("anyOf")
            schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
        param: dict[str, typing.Any] = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if description:
            param["description"] = description
        params.append(param)
    return params
