"""The Images page: images with their builds and schedules; build, delete and switch schedules from it.

A user sees their own images and the shared ones, never another user's
private image of the same name; the API's refusal to delete
an image in use appears as it words it; and at 1000 to 1920 px every button
is on top at its centre and clickable.
"""

from __future__ import annotations

from tests.harness import wait
from tests.web import dashboard, layout

BUTTONS = "table.images tbody button"


async def _api(http, base, person, method, path, **body):
    status, answer = await dashboard.api(http, base, person.token, method, path, **({"json": body} if body else {}))
    assert 200 <= status < 300, (method, path, status, answer)
    return answer


async def test_the_images_page_shows_builds_and_schedules_and_acts_on_them(db, people, start_dashboard, page, http, add_host):
    await add_host("h-img01")
    base = await start_dashboard()
    alice, bob = people.alice, people.bob
    devbox = await _api(http, base, alice, "POST", "/v1/images", name="devbox", dockerfile="FROM busybox\nRUN echo hi\n")
    toolbox = await _api(http, base, alice, "POST", "/v1/images", name="toolbox", git_url="https://git.example.com/dev/toolbox.git", git_ref="v2")
    scratch = await _api(http, base, alice, "POST", "/v1/images", name="scratchpad", dockerfile="FROM busybox\n", build_args={"V": "1"})
    shared = await _api(http, base, bob, "POST", "/v1/images", name="team-base", dockerfile="FROM busybox\n", shared=True)
    bobs_devbox = await _api(http, base, bob, "POST", "/v1/images", name="devbox", dockerfile="FROM debian:12\n")
    nightly = await _api(http, base, alice, "POST", f"/v1/images/{devbox['id']}/schedules", cron="0 3 * * *", timezone="Europe/Berlin")
    hourly = await _api(http, base, alice, "POST", f"/v1/images/{devbox['id']}/schedules", cron="@hourly")
    # A workspace from devbox: placed on the host, it asks for a build of devbox there.
    await _api(http, base, alice, "POST", "/v1/workspaces", name="uses-devbox", image="devbox", cpus=1, memory_mb=256, disk_gb=1)

    await page.add_init_script("sessionStorage.setItem('a4c.pollMs', '300')")
    await dashboard.sign_in(page, base, alice.token, at="#/images")
    rows = page.locator("table.images tbody tr")

    async def four() -> bool:
        return await rows.count() == 4

    await wait.eventually(four, message="alice's three images and bob's shared one")
    ids = await rows.evaluate_all("rows => rows.map(r => r.dataset.imageId)")
    assert set(ids) == {devbox["id"], toolbox["id"], scratch["id"], shared["id"]} and bobs_devbox["id"] not in ids
    row = lambda image: page.locator(f"table.images tbody tr[data-image-id='{image['id']}']")  # noqa: E731
    assert "not yours" in await row(shared).inner_text() and await row(shared).get_by_role("button").count() == 0
    await row(devbox).locator("ul.builds a").first.wait_for()  # the build the workspace asked for
    toolbox_text = await row(toolbox).inner_text()
    assert "https://git.example.com/dev/toolbox.git" in toolbox_text and "ref v2" in toolbox_text and "never built" in toolbox_text
    assert "build args: V=1" in await row(scratch).inner_text()
    devbox_text = await row(devbox).inner_text()
    assert "0 3 * * *" in devbox_text and "Europe/Berlin" in devbox_text and "@hourly" in devbox_text
    await dashboard.screenshot(page, "10-images")

    for width in layout.WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        await dashboard.screenshot(page, f"11-images-{width}px")
        problems = await layout.uncovered_buttons(page, BUTTONS)
        assert problems == [], f"at {width} px: {problems}"
        # devbox, toolbox, scratchpad: Build and Delete; devbox's two schedules: Disable and Delete.
        assert await layout.clickable(page, BUTTONS) == 3 * 2 + 2 * 2, f"at {width} px"
    await page.set_viewport_size({"width": 1280, "height": 900})

    # Switch the nightly schedule off and on again.
    schedule_path = f"/v1/images/{devbox['id']}/schedules/{nightly['id']}"
    await page.get_by_role("button", name="Disable schedule 0 3 * * * of devbox").click()
    await page.get_by_role("button", name="Enable schedule 0 3 * * * of devbox").wait_for()
    assert (await _api(http, base, alice, "GET", schedule_path))["enabled"] is False
    await page.get_by_role("button", name="Enable schedule 0 3 * * * of devbox").click()
    await page.get_by_role("button", name="Disable schedule 0 3 * * * of devbox").wait_for()
    assert (await _api(http, base, alice, "GET", schedule_path))["next_run_at"] is not None

    # Delete the hourly one, after confirming.
    await page.get_by_role("button", name="Delete schedule @hourly of devbox").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await page.get_by_role("button", name="Delete schedule @hourly of devbox").wait_for(state="detached")
    left = (await _api(http, base, alice, "GET", f"/v1/images/{devbox['id']}/schedules"))["items"]
    assert [s["id"] for s in left] == [nightly["id"]] and hourly["id"] not in {s["id"] for s in left}

    # Build scratchpad from its row: the job appears under it.
    await page.get_by_role("button", name="Build scratchpad").click()
    await page.locator(".notice-slot").get_by_text("Build of scratchpad requested").wait_for()
    await row(scratch).locator("ul.builds a").first.wait_for()

    # devbox is used by a workspace: the refusal names it, and the image stays.
    await page.get_by_role("button", name="Delete devbox").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await page.locator(".notice-slot .error-box").get_by_text("uses-devbox").wait_for()
    assert await row(devbox).count() == 1
    await dashboard.screenshot(page, "12-images-delete-refused")

    # toolbox is used by nothing: it goes.
    await page.get_by_role("button", name="Delete toolbox").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await row(toolbox).wait_for(state="detached")
    status, _ = await dashboard.api(http, base, alice.token, "GET", f"/v1/images/{toolbox['id']}")
    assert status == 404
