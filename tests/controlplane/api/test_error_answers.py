"""Which exceptions become which answers (controlplane/api/middleware.py): pure mapping, no server needed."""

from __future__ import annotations

import json

import sqlalchemy as sa
from aiohttp.test_utils import make_mocked_request

from controlplane.api import middleware


def test_no_free_pooled_connection_within_the_pool_timeout_is_a_503_with_retry_after_not_a_500():
    request = make_mocked_request("POST", "/v1/workspaces")
    try:
        raise sa.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached, connection timed out, timeout 5.00")
    except sa.exc.TimeoutError as exc:
        answer = middleware._error_answer(request, exc)
    assert answer.status == 503 and answer.headers["Retry-After"] == "1"
    assert json.loads(answer.body)["error"]["code"] == "unavailable"
