"""The jobs page: search-box text and chips give exactly what the API gives, pages load on, the URL carries the search."""

from __future__ import annotations

import asyncio
import re
import urllib.parse

from tests.harness import wait
from tests.web import conftest, dashboard

QUERY = "kind:image_build step"


async def test_a_key_value_and_free_text_search_shows_exactly_the_ids_the_api_returns(db, people, start_dashboard, page, http):
    await conftest.load_jobs(db, 3000)
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.admin.token)
    await dashboard.search(page, QUERY)
    # The same search through the separate HTTP parameters of GET /v1/jobs/search.
    expected = await dashboard.api_search(http, base, people.admin.token, [("kind", "image_build"), ("q", "step"), ("limit", "50")])
    assert expected["total"] > 100, "the generated data should give this search several pages"
    assert await dashboard.table_ids(page) == [j["id"] for j in expected["jobs"]]
    summary = await page.locator(".summary").inner_text()
    assert f"{expected['total']:,} jobs match" in summary and "Answered by PostgreSQL" in summary
    # Full-text matches are marked in the error column.
    errors = page.locator("table.jobs tbody td.error-text")
    with_step = [i for i, j in enumerate(expected["jobs"]) if j["error"] and re.search(r"\bstep", j["error"], re.I)]
    assert with_step, "some errors of this search mention the word"
    for i in with_step:
        marks = await errors.nth(i).locator("mark").all_inner_texts()
        assert marks and all(m.lower() == "step" for m in marks)
    # Stacked by status once the per-status counts are in.
    await page.locator("figure.chart[data-stacked='true'] svg.histogram rect").first.wait_for()
    await dashboard.screenshot(page, "02-jobs-search")
    await dashboard.screenshot(page, "02-jobs-search-first-screen", full_page=False)

    # Load the next page: the API's second page follows on.
    second = await dashboard.api_search(
        http, base, people.admin.token, [("kind", "image_build"), ("q", "step"), ("limit", "50"), ("cursor", expected["next_cursor"])]
    )
    await page.get_by_role("button", name="Load 50 more").click()
    await wait.eventually(lambda: page.locator("table.jobs tbody tr").count(), message="rows of the second page")
    await wait.eventually(
        lambda: _rows_are(page, 100),
        message="100 rows after loading more",
    )
    assert await dashboard.table_ids(page) == [j["id"] for j in expected["jobs"] + second["jobs"]]


async def _rows_are(page, n: int) -> bool:
    return await page.locator("table.jobs tbody tr").count() == n


async def test_a_facet_chip_narrows_the_search_and_shows_its_count(db, people, start_dashboard, page, http):
    await conftest.load_jobs(db, 3000)
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.admin.token)
    await dashboard.search(page, QUERY)
    # The chips come after the rows (pages/jobs.js): until then they count the page's first search.
    await page.locator(".results[data-settled]").wait_for()
    facets = (await dashboard.api_search(http, base, people.admin.token, [("query", QUERY), ("limit", "1")]))["facets"]
    top = facets["host"][0]
    chip = page.locator(f"button.chip[data-key='host'][data-value='{top['value']}']")
    assert (await chip.locator(".count").inner_text()).replace(",", "") == str(top["count"])
    assert await chip.get_attribute("aria-pressed") == "false"
    await chip.click()
    narrowed = f"{QUERY} host:{top['value']}"
    await page.locator(f".table-slot[data-query='{narrowed}']:not([aria-busy])").wait_for()
    expected = await dashboard.api_search(http, base, people.admin.token, [("query", narrowed), ("limit", "50")])
    assert expected["total"] == top["count"]
    assert await dashboard.table_ids(page) == [j["id"] for j in expected["jobs"]]
    assert {j["host_name"] for j in expected["jobs"]} == {top["value"]}
    assert await page.locator(f"button.chip[data-key='host'][data-value='{top['value']}']").get_attribute("aria-pressed") == "true"
    assert urllib.parse.unquote_plus(page.url.split("query=", 1)[1]) == narrowed
    # The time-range chip rewrites the box's time filter; "Any time" is pressed without one.
    assert await page.locator("button.chip[data-span='any']").get_attribute("aria-pressed") == "true"


async def test_the_url_carries_the_search_so_a_reload_or_a_shared_link_shows_it_again(db, people, start_dashboard, page, chromium, http):
    await conftest.load_jobs(db, 400)
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.admin.token)
    text = 'status:failed -host:h01 "no space left"'
    await dashboard.search(page, text)
    shown = await dashboard.table_ids(page)
    expected = await dashboard.api_search(http, base, people.admin.token, [("query", text), ("limit", "50")])
    assert shown == [j["id"] for j in expected["jobs"]]
    link = page.url
    assert people.admin.token not in link
    await page.reload()
    await page.locator(".table-slot[data-query]:not([aria-busy])").wait_for()
    assert await page.locator("#search").input_value() == text
    assert await dashboard.table_ids(page) == shown
    # Someone else opens the link in a new tab: after signing in they see the same search.
    other = await chromium.new_page()
    await other.goto(link)
    await other.get_by_label("API token").fill(people.admin.token)
    await other.get_by_role("button", name="Sign in").click()
    await other.locator(".table-slot[data-query]:not([aria-busy])").wait_for()
    assert await dashboard.table_ids(other) == shown


async def test_text_typed_while_the_page_starts_is_neither_wiped_nor_lost(db, people, start_dashboard, page):
    # The page's first search waits for the API's contract (GET /v1/openapi.json);
    # on a slow link a person types meanwhile. Holding the contract back makes that
    # moment certain instead of a race.
    await conftest.load_jobs(db, 40)
    base = await start_dashboard()
    contract_asked = asyncio.Event()
    release = asyncio.Event()

    async def hold(route):
        contract_asked.set()
        await release.wait()
        await route.continue_()

    await page.route("**/v1/openapi.json", hold)
    await dashboard.sign_in(page, base, people.admin.token)
    await asyncio.wait_for(contract_asked.wait(), 30)
    box = page.get_by_label("Search jobs", exact=True)
    text = "status:failed"
    await box.fill(text)
    release.set()
    # The page's own first search (all jobs) runs now and must leave the box alone.
    await page.locator(".table-slot[data-query='']:not([aria-busy])").wait_for()
    assert await box.input_value() == text
    await box.press("Enter")
    await page.locator(f".table-slot[data-query='{text}']:not([aria-busy])").wait_for()
    assert page.url.endswith("#/jobs?" + urllib.parse.urlencode({"query": text}))


async def test_a_search_the_api_refuses_shows_its_reason_beside_the_box(db, people, start_dashboard, page):
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.alice.token)
    box = page.locator("#search")
    await box.fill("status:bogus timeout")
    await box.press("Enter")
    problem = page.locator("#search-error")
    await problem.get_by_text("unknown status 'bogus'").wait_for()
    assert "status:bogus" in await problem.inner_text(), "the message names the token"
    assert await box.get_attribute("aria-invalid") == "true"
    assert await page.locator("table.jobs").count() == 0
    await dashboard.screenshot(page, "03-jobs-invalid-search")


async def test_the_search_keys_the_page_offers_are_those_of_the_apis_contract(db, people, start_dashboard, page):
    base = await start_dashboard()

    async def with_another_key(route):
        response = await route.fetch()
        document = await response.json()
        document["paths"]["/v1/jobs/search"]["get"]["x-a4c-search-keys"]["filters"].append("colour")
        await route.fulfill(response=response, json=document)

    await page.route("**/v1/openapi.json", with_another_key)
    await dashboard.sign_in(page, base, people.alice.token)
    keys = page.locator("#search-help .filter-keys code")
    await keys.get_by_text("colour:").wait_for()
    assert await keys.all_inner_texts() == ["status:", "kind:", "user:", "host:", "image:", "workspace:", "colour:"]


async def test_with_no_jobs_the_page_says_so_and_what_creates_them(db, people, start_dashboard, page):
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.alice.token)
    await page.locator(".table-slot[data-query='']").wait_for()
    assert "No jobs yet." in await page.locator(".table-slot").inner_text()


async def _tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector`` (a keyboard user's way there)."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


async def test_the_jobs_page_works_from_the_keyboard_alone(db, people, start_dashboard, page, http):
    await conftest.load_jobs(db, 300)
    base = await start_dashboard()
    await dashboard.open_dashboard(page, base + "/")
    await page.keyboard.type(people.admin.token)  # the token field has the focus
    await page.keyboard.press("Enter")
    await page.locator(".results[data-settled]").wait_for()
    await _tab_to(page, "#search")
    await page.keyboard.type("kind:image_build")
    await page.keyboard.press("Enter")
    await page.locator(".table-slot[data-query='kind:image_build']").wait_for()
    await page.locator(".results[data-settled]").wait_for()
    await _tab_to(page, "button.chip[data-key='status'][data-value='failed']")
    await page.keyboard.press("Space")
    await page.locator(".table-slot[data-query='kind:image_build status:failed']").wait_for()
    await page.locator("button.chip[data-key='status'][data-value='failed'][aria-pressed='true']").wait_for()
    assert await page.evaluate("document.activeElement.dataset.value") == "failed", "the pressed chip keeps the focus"
    expected = await dashboard.api_search(http, base, people.admin.token, [("query", "kind:image_build status:failed"), ("limit", "50")])
    assert await dashboard.table_ids(page) == [j["id"] for j in expected["jobs"]]
    await _tab_to(page, "table.jobs tbody tr a")
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name=f"Job {expected['jobs'][0]['id']}").wait_for()


async def _settled(page, text: str) -> None:
    """The search for ``text`` shows its rows and, after them, its counts and chips."""
    await page.locator(f".table-slot[data-query='{text}']:not([aria-busy])").wait_for()
    await page.locator(".results[data-settled]").wait_for()


async def test_the_kind_user_and_image_chips_each_narrow_the_table_to_exactly_what_the_api_returns(db, people, start_dashboard, page, http):
    await conftest.load_jobs(db, 1500)
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.admin.token)
    start = "status:failed"
    await dashboard.search(page, start)
    await _settled(page, start)
    everything = await dashboard.api_search(http, base, people.admin.token, [("query", start), ("limit", "1")])

    # Kind and user: facet chips with the API's counts.
    for key, field in (("kind", "kind"), ("user", "user_name")):
        top = everything["facets"][key][0]
        assert top["count"] < everything["total"], f"the top {key} should leave some failed jobs out"
        chip = page.locator(f"button.chip[data-key='{key}'][data-value='{top['value']}']")
        assert await chip.get_attribute("aria-pressed") == "false"
        assert (await chip.locator(".count").inner_text()).replace(",", "") == str(top["count"])
        await chip.click()
        narrowed = f"{start} {key}:{top['value']}"
        await _settled(page, narrowed)
        expected = await dashboard.api_search(http, base, people.admin.token, [("query", narrowed), ("limit", "50")])
        assert expected["total"] == top["count"]
        assert {j[field] for j in expected["jobs"]} == {top["value"]}
        assert await dashboard.table_ids(page) == [j["id"] for j in expected["jobs"]]
        assert await page.locator(f"button.chip[data-key='{key}'][data-value='{top['value']}']").get_attribute("aria-pressed") == "true"
        # Pressed again, the chip takes its filter away.
        await page.locator(f"button.chip[data-key='{key}'][data-value='{top['value']}']").click()
        await _settled(page, start)

    # Image: no facet in the API, so a name field adds the filter and its chip takes it away.
    image = next(
        j["image_name"]
        for j in (await dashboard.api_search(http, base, people.admin.token, [("query", start), ("limit", "50")]))["jobs"]
        if j["image_name"]
    )
    await page.get_by_label("Filter by image name").fill(image)
    await page.locator("section.facet[aria-labelledby='facet-image']").get_by_role("button", name="Add", exact=True).click()
    narrowed = f"{start} image:{image}"
    await _settled(page, narrowed)
    expected = await dashboard.api_search(http, base, people.admin.token, [("query", narrowed), ("limit", "50")])
    assert 0 < expected["total"] < everything["total"]
    assert {j["image_name"] for j in expected["jobs"]} == {image}
    assert await dashboard.table_ids(page) == [j["id"] for j in expected["jobs"]]
    chip = page.locator(f"button.chip[data-key='image'][data-value='{image}']")
    assert await chip.get_attribute("aria-pressed") == "true"
    await chip.click()
    await _settled(page, start)
