"""Signing in with an API token: it is checked, kept in the tab's session storage, never put in a URL."""

from __future__ import annotations

from tests.web import dashboard


async def test_a_valid_token_signs_in_and_stays_out_of_the_url(db, people, start_dashboard, page):
    base = await start_dashboard()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await dashboard.open_dashboard(page, base + "/")
    await dashboard.screenshot(page, "01-sign-in")
    await dashboard.sign_in(page, base, people.alice.token)
    assert await page.locator("#who").inner_text() == "alice (user)"
    assert await page.evaluate("sessionStorage.getItem('a4c.token')") == people.alice.token
    assert await page.evaluate("localStorage.length") == 0
    # Users are not shown the admins' page.
    assert not await page.get_by_role("link", name="Hosts").is_visible()
    await page.reload()
    await page.locator("#top").wait_for(state="visible")
    assert await page.locator("#who").inner_text() == "alice (user)", "a reload keeps the tab signed in"
    assert requested and all(people.alice.token not in url for url in [*requested, page.url])
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("API token").wait_for()
    assert await page.evaluate("sessionStorage.getItem('a4c.token')") is None


async def test_an_unknown_token_is_refused_with_a_message_saying_what_to_do(db, people, start_dashboard, page):
    base = await start_dashboard()
    await dashboard.open_dashboard(page, base + "/")
    await page.get_by_label("API token").fill("a4c_not-a-real-token")
    await page.get_by_role("button", name="Sign in").click()
    problem = page.locator("#token-error")
    await problem.get_by_text("This token was not accepted").wait_for()
    assert "ask an admin" in (await problem.inner_text()).lower()
    assert await page.get_by_label("API token").get_attribute("aria-invalid") == "true"
    assert await page.evaluate("sessionStorage.getItem('a4c.token')") is None
    assert not await page.locator("#top").is_visible()


async def test_an_admin_sees_the_hosts_page_in_the_navigation(db, people, start_dashboard, page):
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.admin.token)
    assert await page.locator("#who").inner_text() == f"{people.admin.name} (admin)"
    await page.get_by_role("link", name="Hosts").click()
    await page.get_by_role("heading", name="Hosts").wait_for()
    assert page.url.endswith("#/hosts")
