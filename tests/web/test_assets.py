"""The control plane serves the dashboard itself: a never-cached page, versioned immutable assets, no rate limit on them."""

from __future__ import annotations

import re

from controlplane.web import routes


async def test_the_page_names_its_assets_by_content_and_they_are_cached_for_good(start_dashboard, http):
    base = await start_dashboard()
    async with http.get(base + "/") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-cache"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        page = await resp.text()
    version = routes.Assets.load().version
    scripts = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page)
    assert scripts and all(s.startswith(f"/ui/{version}/") for s in scripts)
    for path in scripts:
        async with http.get(base + path) as resp:
            assert resp.status == 200, path
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    async with http.get(f"{base}/ui/{version}/js/pages/jobs.js") as resp:
        assert resp.headers["Content-Type"].startswith("text/javascript")
    async with http.get(f"{base}/ui/{version}/js/no-such-file.js") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_an_asset_asked_for_under_another_version_is_served_but_not_cached(start_dashboard, http):
    base = await start_dashboard()
    async with http.get(base + "/ui/0123456789abcdef/app.css") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-cache"


async def test_loading_the_dashboard_does_not_spend_the_anonymous_rate_limit(start_dashboard, http):
    base = await start_dashboard(**{"rate_limit.enabled": True, "rate_limit.anonymous_rps": 0.1, "rate_limit.anonymous_burst": 2})
    version = routes.Assets.load().version
    for _ in range(3):
        for path in ["/", f"/ui/{version}/js/main.js", f"/ui/{version}/app.css", f"/ui/{version}/js/pages/jobs.js"]:
            async with http.get(base + path) as resp:
                assert resp.status == 200, (path, resp.status)
    # The API's anonymous budget still applies to the API.
    statuses = []
    for _ in range(4):
        async with http.get(base + "/v1/openapi.json") as resp:
            statuses.append(resp.status)
    assert 429 in statuses
