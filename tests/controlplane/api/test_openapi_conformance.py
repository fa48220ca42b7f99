"""Schemathesis against the served OpenAPI document: hundreds of generated requests, no 5xx, no answer contradicting the schema.

The API runs on a real port in its own thread and event loop (Schemathesis'
transport is blocking ``requests``), against this module's PostgreSQL
database, with an admin token so every route is reachable. Every operation
gets positive examples (valid by the schema) and negative ones (violating it),
and every response goes through Schemathesis' checks: no server error, status
code and content type documented, headers and body matching their schemas,
invalid data rejected.
"""

from __future__ import annotations

import asyncio
import threading
import typing
import uuid

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from aiohttp import web
from hypothesis import strategies as st
from schemathesis.specs.openapi import checks as openapi_checks

from controlplane.api import app as api_app
from controlplane.db import engine as db_engine
from controlplane.db import models
from controlplane.services import users
from tests.controlplane.api.conftest import settings_for
from tests.harness import wait

# Per role: at least 2,500 generated requests each for an admin and a user (5,000 in all),
# mostly valid ones. Few negative ones: the token this test adds undoes a negated
# security header, and requests drops a query parameter generated as null, so a
# "violating" case can arrive valid and be rightly accepted.
POSITIVE_PER_OPERATION = 66
NEGATIVE_PER_OPERATION = 4
MINIMUM_REQUESTS = 2_500

# "Schema-valid data is accepted" cannot hold where validity depends on the
# database: a workspace may name a registered image, and a generated name is
# almost never one (the API rightly answers 422). Nor where it is a grammar's:
# the job search's parameters are the search syntax
# (controlplane/search/domain/grammar.py, property-tested in
# tests/controlplane/search/test_query.py), which no JSON Schema can state, so
# a generated status or search text is rightly refused. Everything else is
# checked, the search's declared parameters included.
SEMANTIC_OPERATIONS = {"POST /v1/workspaces", "GET /v1/jobs/search"}


class ThreadedApi:
    """One app instance served from a background thread, for blocking clients."""

    def __init__(self, database_url: str) -> None:
        # A generated blocking read (?index=…) would wait out its wait: cut every wait short here.
        self._settings = settings_for(database_url, **{"watch.max_wait": 0.01})
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="api-under-test", daemon=True)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> None:
        self._runner = web.AppRunner(api_app.init_app(self._settings), access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def _token(database_url: str, role: models.Role) -> str:
    async def make() -> str:
        engine = db_engine.create(settings_for(database_url).database)
        try:
            async with db_engine.sessionmaker(engine)() as session, session.begin():
                user = await users.create_user(session, f"fuzz-{role.value}", role)
                return (await users.issue_token(session, user.id, name="schemathesis")).token
        finally:
            await engine.dispose()

    return asyncio.run(make())


# One database for the module: one API server (a thread of its own) answers every request the schema lists.
@pytest.fixture(scope="module")
def served(module_database_url: str) -> typing.Iterator[tuple[str, dict[str, str]]]:
    tokens = {role.value: _token(module_database_url, role) for role in (models.Role.ADMIN, models.Role.USER)}
    api = ThreadedApi(module_database_url)
    api.start()
    try:
        yield api.base_url, tokens
    finally:
        api.stop()


@pytest.mark.parametrize("role", ["admin", "user"])
def test_generated_requests_get_no_server_error_and_no_answer_outside_the_schema(served, role):
    base_url, tokens = served
    token = tokens[role]
    schema = wait.wait_until(lambda: schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json"), message="schema served")
    headers = {"Authorization": f"Bearer {token}"}
    sent = 0
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Schemathesis leaves out the document's own URL; every other route is exercised.
    assert {op.label for op in operations} == {f"{e.method} {e.path}" for e in api_app.endpoints()} - {"GET /v1/openapi.json"}

    for operation in operations:
        for mode, examples in (
            (schemathesis.GenerationMode.POSITIVE, POSITIVE_PER_OPERATION),
            (schemathesis.GenerationMode.NEGATIVE, NEGATIVE_PER_OPERATION),
        ):

            @hypothesis.settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.generate],
            )
            @hypothesis.given(data=st.data())
            def exercise(data: st.DataObject) -> None:
                nonlocal sent
                case = data.draw(operation.as_strategy(generation_mode=mode))
                if mode is schemathesis.GenerationMode.POSITIVE and case.headers and "Idempotency-Key" in case.headers:
                    # A key names one request; the generator reuses short keys for
                    # different requests, which the API rightly refuses (422).
                    case.headers["Idempotency-Key"] = str(uuid.uuid4())
                response = case.call(base_url=base_url, headers=headers)
                sent += 1
                excluded = [openapi_checks.positive_data_acceptance] if operation.label in SEMANTIC_OPERATIONS else []
                try:
                    case.validate_response(
                        response, excluded_checks=excluded, headers=headers, transport_kwargs={"base_url": base_url, "headers": headers}
                    )
                except BaseException as exc:  # collected, reported together below
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
                    raise

            try:
                exercise()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to negate: the operation takes no parameters or body
            except BaseException as exc:  # noqa: BLE001 - recorded; keep covering the other operations
                if not failures or operation.label not in failures[-1]:
                    failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {exc}")

    assert not failures, "\n\n".join(failures[:5])
    assert sent >= MINIMUM_REQUESTS, f"only {sent} generated requests"
