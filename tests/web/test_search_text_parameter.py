"""GET /v1/jobs/search?query=: the search-box text the dashboard sends means what the separate parameters mean."""

from __future__ import annotations

from tests.web import conftest, dashboard


async def test_the_text_and_the_separate_parameters_find_the_same_jobs(db, people, start_dashboard, http):
    await conftest.load_jobs(db, 500)
    base = await start_dashboard()
    text = 'status:failed,cancelled -host:h01 created>=2025-01-01 "no space left"'
    by_text = await dashboard.api_search(http, base, people.admin.token, [("query", text), ("limit", "500")])
    by_params = await dashboard.api_search(
        http,
        base,
        people.admin.token,
        [
            ("status", "failed"),
            ("status", "cancelled"),
            ("not_host", "h01"),
            ("created_after", "2025-01-01"),
            ("q", '"no space left"'),
            ("limit", "500"),
        ],
    )
    assert by_text["jobs"] and [j["id"] for j in by_text["jobs"]] == [j["id"] for j in by_params["jobs"]]
    assert by_text["facets"] == by_params["facets"]
    assert by_text["query"] == by_params["query"] == 'status:cancelled,failed -host:h01 created>=2025-01-01 "no space left"'


async def test_a_mistake_in_the_text_is_a_422_naming_the_token(db, people, start_dashboard, http):
    base = await start_dashboard()
    status, body = await dashboard.api(http, base, people.alice.token, "GET", "/v1/jobs/search", params=[("query", "kind:image_build colour:red")])
    assert status == 422
    [field] = body["error"]["fields"]
    assert field["path"] == "query"
    assert field["reason"].startswith("'colour:red' at position 17: unknown key 'colour'")


async def test_the_text_is_not_mixed_with_separate_filter_parameters(db, people, start_dashboard, http):
    base = await start_dashboard()
    status, body = await dashboard.api(
        http, base, people.alice.token, "GET", "/v1/jobs/search", params=[("query", "status:failed"), ("host", "h1"), ("limit", "5")]
    )
    assert status == 422
    assert [f["path"] for f in body["error"]["fields"]] == ["host"]
    # Paging and facet switches go with it.
    status, body = await dashboard.api(
        http,
        base,
        people.alice.token,
        "GET",
        "/v1/jobs/search",
        params=[("query", "status:failed"), ("limit", "5"), ("facets", "false"), ("interval", "day")],
    )
    assert status == 200, body
