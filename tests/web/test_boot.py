"""The page recovers by itself when its own code fails to arrive, and says so when it cannot (static/js/boot.js)."""

from __future__ import annotations

import base64
import hashlib
import re

from playwright import async_api as pw

from controlplane.web import routes
from tests.harness import wait
from tests.web import dashboard


def _fail_first(times: int | None):
    """A route handler that aborts the first ``times`` requests (all of them when None) as a dropped connection."""
    seen: list[str] = []

    async def handle(route: pw.Route) -> None:
        seen.append(route.request.url)
        if times is None or len(seen) <= times:
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    return handle, seen


async def _cut_off(page: pw.Page, pattern: str, times: int | None) -> list[str]:
    """Abort the first ``times`` requests for ``pattern`` (all when None); returns the URLs requested, as they come."""
    handle, seen = _fail_first(times)
    await page.route(pattern, handle)
    return seen


async def test_a_page_whose_main_module_was_cut_off_reloads_itself_and_comes_up(start_dashboard, page):
    base = await start_dashboard()
    seen = await _cut_off(page, "**/js/main.js", 1)
    await dashboard.open_dashboard(page, base + "/#/workspaces")
    assert len(seen) == 2, "one failed load of main.js, then one reload that fetched it"
    assert await page.get_by_role("alert").count() == 0
    assert len(await page.evaluate("JSON.parse(sessionStorage.getItem('a4c.boot-reloads'))")) == 1, "the reload is remembered for a minute"


async def test_a_cut_off_preloaded_page_module_reloads_too_and_the_signed_in_user_gets_the_jobs_page(start_dashboard, people, page):
    base = await start_dashboard()
    seen = await _cut_off(page, "**/js/pages/jobs-view.js", 1)
    # The sign-in form may show before the preload's failure does; the reload follows either way.
    await page.goto(base + "/")
    await wait.eventually(lambda: len(seen) == 2, timeout=30, message="a reload that fetched jobs-view.js again")
    await dashboard.sign_in(page, base, people.alice.token)
    await page.get_by_role("heading", name="Jobs").wait_for()
    assert await page.get_by_role("alert").count() == 0


async def test_code_that_never_arrives_ends_in_a_message_and_a_reload_button_not_a_spinner(start_dashboard, page):
    base = await start_dashboard()
    seen = await _cut_off(page, "**/js/main.js", None)
    await page.goto(base + "/")
    alert = page.get_by_role("alert")
    await alert.get_by_text("could not be loaded after 3 retries").wait_for(timeout=30_000)
    assert len(seen) == 4, "the first load and three reloads"
    assert "a4c command-line client" in await alert.inner_text()
    # The button reloads (the person's reload, not counted), and this time the code arrives.
    await page.unroute("**/js/main.js")
    await alert.get_by_role("button", name="Reload").click()
    await page.get_by_label("API token").wait_for()


async def test_a_page_module_that_never_arrives_stops_reloading_after_three_tries(start_dashboard, page):
    # The preload's failure may come after the sign-in form shows (after "load"): still at most three reloads.
    base = await start_dashboard()
    seen = await _cut_off(page, "**/js/pages/jobs-view.js", None)
    await page.goto(base + "/")
    await page.get_by_role("alert").get_by_text("could not be loaded after 3 retries").wait_for(timeout=30_000)
    assert len(seen) == 4


async def test_a_tab_without_storage_says_so_at_once_instead_of_reloading_without_bound(start_dashboard, page):
    base = await start_dashboard()
    await page.add_init_script("Object.defineProperty(window, 'sessionStorage', {get() { throw new DOMException('blocked', 'SecurityError'); }})")
    seen = await _cut_off(page, "**/js/main.js", None)
    await page.goto(base + "/")
    await page.get_by_role("alert").get_by_text("The dashboard's code could not be loaded").wait_for(timeout=30_000)
    assert len(seen) == 1


async def test_the_inline_boot_script_is_allowed_by_its_hash_and_nothing_else_inline_is(start_dashboard, http):
    base = await start_dashboard()
    async with http.get(base + "/") as resp:
        policy = resp.headers["Content-Security-Policy"]
        page = await resp.text()
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src")).split()
    assert script_src == ["script-src", "'self'", f"'sha256-{digest}'"]
    assert "unsafe-inline" not in policy
    assert inline[0].encode() == routes.Assets.load().files[routes.BOOT].body


async def test_a_read_cut_off_once_is_asked_again_and_a_write_is_not(db, people, start_dashboard, page):
    base = await start_dashboard()
    seen = await _cut_off(page, "**/v1/me", 1)
    await dashboard.sign_in(page, base, people.alice.token)  # the sign-in's GET /v1/me, cut off once
    assert len(seen) == 2
    assert await page.locator("#who").inner_text() == "alice (user)"
    # A write that never got an answer is reported, not sent again.
    writes, posted = _fail_first(None)
    await page.route("**/v1/workspaces", lambda route: writes(route) if route.request.method == "POST" else route.continue_())
    await page.get_by_role("link", name="Workspaces").click()
    await page.get_by_label("Name", exact=True).fill("once")
    await page.get_by_role("textbox", name="Docker reference").fill("debian:12")
    await page.get_by_role("button", name="Create workspace").click()
    await page.get_by_text("Could not reach the control plane").wait_for()
    assert len(posted) == 1
