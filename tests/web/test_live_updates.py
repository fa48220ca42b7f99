"""New and changed jobs reach an open jobs page without a reload, and the row being read stays put on screen."""

from __future__ import annotations

from tests.harness import wait
from tests.web import conftest, dashboard

FAST_POLL = "sessionStorage.setItem('a4c.pollMs', '300')"


async def test_a_job_created_through_the_api_appears_without_reload_and_the_scroll_position_holds(db, people, start_dashboard, page, http):
    await conftest.load_jobs(db, 200)
    base = await start_dashboard()
    await page.add_init_script(FAST_POLL)
    await dashboard.sign_in(page, base, people.alice.token)
    await page.locator(".results[data-settled]").wait_for()
    before = await dashboard.table_ids(page)
    assert before, "alice has generated jobs"
    await page.evaluate("window.notReloaded = true")
    # Read somewhere in the middle of the table.
    reading = page.locator(f"table.jobs tbody tr[data-job-id='{before[20]}']")
    await page.evaluate("row => window.scrollTo(0, row.getBoundingClientRect().top + window.scrollY - 300)", await reading.element_handle())
    top_before = await reading.evaluate("row => row.getBoundingClientRect().top")
    scrolled_before = await page.evaluate("window.scrollY")
    assert scrolled_before > 0

    status, accepted = await dashboard.api(
        http,
        base,
        people.alice.token,
        "POST",
        "/v1/workspaces",
        json={"name": "live-one", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1},
    )
    assert status == 202, accepted
    job_id = accepted["job"]["id"]
    new_row = page.locator(f"table.jobs tbody tr[data-job-id='{job_id}']")
    await new_row.wait_for(state="attached", timeout=30_000)

    ids = await dashboard.table_ids(page)
    assert ids[0] == job_id, "the newest job goes first, as the API sorts"
    assert ids[1:] == before
    assert await page.evaluate("window.notReloaded") is True
    top_after = await reading.evaluate("row => row.getBoundingClientRect().top")
    assert abs(top_after - top_before) <= 1, (top_before, top_after)
    assert await page.evaluate("window.scrollY") > scrolled_before
    await page.evaluate("window.scrollTo(0, 0)")
    await dashboard.screenshot(page, "04-jobs-live-update", full_page=False)


async def test_a_changed_job_is_redrawn_in_place(db, people, start_dashboard, page, http):
    base = await start_dashboard()
    await page.add_init_script(FAST_POLL)
    await dashboard.sign_in(page, base, people.alice.token)
    status, accepted = await dashboard.api(
        http,
        base,
        people.alice.token,
        "POST",
        "/v1/workspaces",
        json={"name": "changing", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1},
    )
    assert status == 202
    job_id = accepted["job"]["id"]
    row = page.locator(f"table.jobs tbody tr[data-job-id='{job_id}']")
    await row.wait_for(timeout=30_000)
    assert await row.get_attribute("data-status") == accepted["job"]["status"]
    # The job fails (as an agent's report would make it); the page shows it without a reload.
    await db.execute("UPDATE jobs SET status = 'failed', error = 'image pull failed: manifest unknown', finished_at = now() WHERE id = $1", job_id)
    await wait.eventually(lambda: _status_is(row, "failed"), timeout=30, message="the row shows the new status")
    assert "manifest unknown" in await row.locator("td.error-text").inner_text()
    assert await page.locator("table.jobs tbody tr").count() == 1


async def _status_is(row, status: str) -> bool:
    return await row.get_attribute("data-status") == status
