"""The hosts page (admins): disk bars from the agents' reports with the watermark line, allocation, liveness, cordon and drain."""

from __future__ import annotations

from controlplane.db import models
from tests.harness import wait
from tests.web import dashboard
from tests.web.conftest import GIB


async def test_a_hosts_disk_bar_reflects_its_reported_usage_and_pressure_and_down_hosts_stand_out(db, people, start_dashboard, add_host, page, http):
    ok = await add_host("h-ok", disk_total=500 * GIB, disk_used=200 * GIB)
    full = await add_host("h-full", disk_total=500 * GIB, disk_used=460 * GIB)
    down = await add_host("h-down", disk_used=50 * GIB, heartbeat_age=600, status=models.HostStatus.DOWN)
    await add_host("h-new", disk_used=None, heartbeat_age=None)
    # Its agent reports a 95 % watermark: 460 of 500 GiB (92 %) is below its own line.
    tuned = await add_host("h-tuned", disk_total=500 * GIB, disk_used=460 * GIB, high_watermark=95)
    base = await start_dashboard()
    # Placement puts it on the eligible host with the least disk used: h-ok.
    status, accepted = await dashboard.api(
        http,
        base,
        people.alice.token,
        "POST",
        "/v1/workspaces",
        json={"name": "big", "image_ref": "debian:12", "cpus": 4, "memory_mb": 8192, "disk_gb": 20},
    )
    assert status == 202 and accepted["workspace"]["host_id"] == str(ok.id), accepted

    await dashboard.sign_in(page, base, people.admin.token, at="#/hosts")
    row = {h.name: page.locator(f"table.hosts tbody tr[data-host-id='{h.id}']") for h in (ok, full, down, tuned)}
    await row["h-ok"].wait_for()

    ok_bar = row["h-ok"].locator("td.disk svg.usage")
    assert float(await ok_bar.get_attribute("data-fraction")) == 0.4
    assert "200 GiB of 500 GiB used (40.0 %)" in await row["h-ok"].locator("td.disk").inner_text()
    assert float(await ok_bar.locator("rect.used").get_attribute("width")) == 220 * 0.4
    assert float(await ok_bar.locator("line.watermark").get_attribute("x1")) == 220 * 0.85, "the line sits at the default 85 %"
    assert "high watermark 85%" in await ok_bar.get_attribute("aria-label")
    assert await row["h-ok"].get_attribute("data-pressure") == "false"
    assert "4 of 16 CPUs" in await row["h-ok"].inner_text()
    assert "8.0 GiB of 64.0 GiB" in await row["h-ok"].inner_text()

    full_bar = row["h-full"].locator("td.disk svg.usage")
    assert float(await full_bar.get_attribute("data-fraction")) == 0.92
    assert await row["h-full"].get_attribute("data-pressure") == "true"
    assert "pressure" in await row["h-full"].get_attribute("class")
    assert "Disk pressure" in await row["h-full"].inner_text()

    assert "down" in await row["h-down"].get_attribute("class")
    assert "down since" in await row["h-down"].inner_text()
    assert "h-new" in await page.locator("table.hosts").inner_text()
    assert "no disk report yet" in await page.locator("table.hosts tbody tr", has_text="h-new").inner_text()
    assert float(await row["h-tuned"].locator("line.watermark").get_attribute("x1")) == 220 * 0.95, "the agent's own watermark"
    assert await row["h-tuned"].get_attribute("data-pressure") == "false"
    assert await page.locator(".summary").inner_text() == "5 hosts: 1 down, 1 under disk pressure, 0 cordoned."
    await dashboard.screenshot(page, "09-hosts")

    # For a host whose agent reports no watermark, the line follows the value set on the page.
    await page.get_by_label("High watermark line (%)").fill("95")
    await page.get_by_label("High watermark line (%)").press("Enter")
    await wait.eventually(lambda: _attr_is(row["h-full"], "data-pressure", "false"), message="no pressure under a 95 % line")
    assert float(await row["h-full"].locator("line.watermark").get_attribute("x1")) == 220 * 0.95


async def test_cordon_and_drain_ask_first_then_act_through_the_api(db, people, start_dashboard, add_host, page, http):
    host = await add_host("h-busy")
    base = await start_dashboard()
    status, accepted = await dashboard.api(
        http,
        base,
        people.alice.token,
        "POST",
        "/v1/workspaces",
        json={"name": "stays", "image_ref": "debian:12", "cpus": 1, "memory_mb": 256, "disk_gb": 1},
    )
    assert status == 202 and accepted["workspace"]["host_id"] == str(host.id)
    await dashboard.sign_in(page, base, people.admin.token, at="#/hosts")
    row = page.locator(f"table.hosts tbody tr[data-host-id='{host.id}']")
    await row.get_by_role("button", name="Cordon h-busy").click()
    await page.get_by_role("dialog").get_by_role("button", name="Cordon").click()
    await row.get_by_role("button", name="Uncordon h-busy").wait_for()
    status, seen = await dashboard.api(http, base, people.admin.token, "GET", f"/v1/hosts/{host.id}")
    assert seen["cordoned"] is True and seen["draining"] is False

    await row.get_by_role("button", name="Drain h-busy").click()
    await page.get_by_role("dialog").get_by_role("button", name="Drain").click()
    notice = page.locator(".notice-slot")
    await notice.get_by_text("h-busy is draining: 1 workspace still on it.").wait_for()
    assert await notice.get_by_role("link", name="stays").get_attribute("href") == f"#/workspaces/{accepted['workspace']['id']}"
    status, seen = await dashboard.api(http, base, people.admin.token, "GET", f"/v1/hosts/{host.id}")
    assert seen["draining"] is True
    await row.locator(".badge.flag-draining").wait_for()


async def test_a_user_who_is_not_an_admin_is_told_the_hosts_page_is_for_admins(db, people, start_dashboard, page):
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.bob.token, at="#/hosts")
    await page.get_by_text("Hosts are shown to admins only.").wait_for()


async def _attr_is(locator, name: str, value: str) -> bool:
    return await locator.get_attribute(name) == value
