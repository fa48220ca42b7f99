"""The chips' edits of the search-box text (js/querytext.js), run in the real browser: only the edited token changes."""

from __future__ import annotations

import json

import pytest

from controlplane.web import routes

CASES = [
    ("tokens", ['a "b c" d:"e f" -x:y'], ["a", '"b c"', 'd:"e f"', "-x:y"]),
    ("toggle", ["status:failed timeout", "status", "failed"], "timeout"),
    ("toggle", ["STATUS:Failed,running x", "status", "failed"], "status:running x"),
    ("toggle", ['"no space" host:h1', "host", "h2"], '"no space" host:h1 host:h2'),
    ("toggle", ["host:H1", "host", "h1"], "host:H1 host:h1"),  # host names keep their case
    ("toggle", ["-status:failed", "status", "failed"], "-status:failed status:failed"),
    ("only", ["status:failed,running -status:queued x", "status", "running"], "-status:queued x status:running"),
    ("withSince", ["since:2h created>=2025-01-01 foo", "7d"], "foo since:7d"),
    ("withSince", ["foo since:2h", None], "foo"),
    ("since", ["kind:image_build since:24H"], "24h"),
    ("terms", ['status:failed "no space left" oom -host:h1 sort:-created_at'], ["no space left", "oom"]),
    ("filters", ["status:failed,running -kind:image_build host:H1 user:Bob"], {"status": ["failed", "running"], "host": ["H1"], "user": ["bob"]}),
]


@pytest.fixture
async def module(start_dashboard, page):
    base = await start_dashboard()
    await page.goto(base + "/")
    version = routes.Assets.load().version
    return f"/ui/{version}/js/querytext.js"


async def test_each_edit_changes_only_its_own_token(module, page):
    # The keys are the API's, read from its contract as the jobs page does (js/schema.js).
    script = """async ([path, name, args]) => {
        const q = await import(path);
        q.configure(await (await import(path.replace("querytext.js", "schema.js"))).jobSyntax());
        return q[name](...args);
    }"""
    for name, args, expected in CASES:
        got = await page.evaluate(script, [module, name, args])
        assert got == expected, (name, args)


async def test_matches_are_marked_as_the_stemming_search_reads_them(module, page):
    script = """async ([path, terms, text]) => {
        const q = await import(path);
        return q.pieces(text, q.matcher(terms));
    }"""
    cases = [
        (["no space left"], "No space left on device", [["No space left", True], [" on device", False]]),
        (["no space left"], "no  space: left", [["no  space: left", True]]),
        (["fail"], "build failed, unfailing", [["build ", False], ["fail", True], ["ed, unfailing", False]]),
        (["a.b"], "x a-b y", [["x ", False], ["a-b", True], [" y", False]]),
        ([], "nothing to mark", [["nothing to mark", False]]),
    ]
    for terms, text, expected in cases:
        assert await page.evaluate(script, [module, terms, text]) == expected, json.dumps([terms, text])
