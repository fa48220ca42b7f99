"""The workspaces page lays out without overlap from 1000 to 1920 px.

At each width every action button is the element at its own centre
(``document.elementFromPoint``) and Playwright can click it; the create panel
never covers the table; the table shows CPU, memory, disk and the state reason.
"""

from __future__ import annotations

import json
import typing

from tests.harness import wait
from tests.web import dashboard, layout

ACTIONS = "table.workspaces td.actions button"


async def _workspaces(db, http, base, people) -> None:
    """Every row shape an admin sees: running (Stop, Delete), stopped (Start, Delete), waiting with a long reason, a long image tag."""
    status, image = await dashboard.api(
        http, base, people.alice.token, "POST", "/v1/images", json={"name": "a-rather-long-image-name-for-tests", "dockerfile": "FROM busybox"}
    )
    assert status == 201, image
    bodies: list[tuple[typing.Any, dict[str, typing.Any]]] = [
        (
            people.alice,
            {
                "name": "alice-running-workspace",
                "image_ref": "registry.example.com:5000/team/toolbox-with-a-long-name:2026.12.04",
                "ports": [{"container_port": 22}, {"container_port": 8080}],
            },
        ),
        (people.alice, {"name": "alice-stopped", "image_ref": "debian:12"}),
        (people.bob, {"name": "bob-waiting-for-a-host-with-a-long-name", "image_ref": "debian:12"}),
        (people.alice, {"name": "alice-registered", "image": "a-rather-long-image-name-for-tests"}),
    ]
    for person, body in bodies:
        status, made = await dashboard.api(
            http, base, person.token, "POST", "/v1/workspaces", json={"cpus": 2, "memory_mb": 4096, "disk_gb": 20, **body}
        )
        assert status == 202, made
    host = await db.fetchval("SELECT id FROM hosts LIMIT 1")
    ports = [{"host_ip": "127.0.0.1", "host_port": 49153 + n, "container_port": p, "protocol": "tcp"} for n, p in enumerate((22, 8080))]
    await db.execute(
        "UPDATE workspaces SET host_id = $1, observed_state = 'running', container_id = 'c0ffee', published_ports = $2::jsonb WHERE name = 'alice-running-workspace'",
        host,
        json.dumps(ports),
    )
    await db.execute("UPDATE workspaces SET host_id = $1, observed_state = 'stopped', desired_state = 'stopped' WHERE name = 'alice-stopped'", host)


async def test_every_action_button_is_on_top_and_clickable_from_1000_to_1920_px(db, people, start_dashboard, page, http, add_host):
    await add_host("h-layout01", cpus=2, memory_mb=2048)  # too small for them: the others wait, saying why
    base = await start_dashboard()
    await _workspaces(db, http, base, people)
    await dashboard.sign_in(page, base, people.admin.token, at="#/workspaces")
    rows = page.locator("table.workspaces tbody tr")

    async def four() -> bool:
        return await rows.count() == 4

    await wait.eventually(four, message="the four workspaces")
    await page.get_by_role("button", name="Create workspace").wait_for()
    text = await page.locator("table.workspaces").inner_text()
    headers = await page.locator("table.workspaces thead th").all_inner_texts()
    assert "Resources" in headers, headers
    running = page.locator("table.workspaces tbody tr", has_text="alice-running-workspace")
    shown = await running.inner_text()
    assert all(part in shown for part in ("2 CPUs", "4096 MiB", "20 GiB disk")), shown
    reason = await db.fetchval("SELECT state_reason FROM workspaces WHERE name = 'bob-waiting-for-a-host-with-a-long-name'")
    assert reason and reason in text

    for width in layout.WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        await dashboard.screenshot(page, f"09-workspaces-{width}px")
        problems = await layout.uncovered_buttons(page, ACTIONS)
        assert problems == [], f"at {width} px: {problems}"
        assert await layout.overlap(page, "table.workspaces", "section.create") is False, f"at {width} px the create panel overlaps the table"
        assert await layout.clickable(page, ACTIONS) == 2 + 2 + 1 + 1, f"at {width} px"

    # And a real click reaches the button: its confirmation opens.
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.get_by_role("button", name="Delete alice-running-workspace").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_text("Delete workspace alice-running-workspace?").wait_for()
    await dialog.get_by_role("button", name="Cancel").click()


async def test_at_phone_and_tablet_widths_the_page_never_scrolls_sideways_and_the_header_stays_in_view(
    db, people, start_dashboard, page, http, add_host
):
    await add_host("h-layout02", cpus=2, memory_mb=2048)
    base = await start_dashboard()
    await _workspaces(db, http, base, people)
    await dashboard.sign_in(page, base, people.admin.token, at="#/workspaces")
    rows = page.locator("table.workspaces tbody tr")

    async def four() -> bool:
        return await rows.count() == 4

    await wait.eventually(four, message="the four workspaces")
    for width in (375, 768):
        await page.set_viewport_size({"width": width, "height": 800})
        await dashboard.screenshot(page, f"09-workspaces-{width}px")
        # A wide table scrolls in its own box; the page itself is as wide as the screen.
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"at {width} px the page scrolls sideways"
        sign_out = await page.get_by_role("button", name="Sign out").bounding_box()
        assert sign_out is not None and sign_out["x"] + sign_out["width"] <= width, f"at {width} px Sign out is off screen: {sign_out}"
        assert await layout.overlap(page, "table.workspaces", "section.create") is False, f"at {width} px the create panel overlaps the table"
