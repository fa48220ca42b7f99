"""A job's page: the timeline queued → dispatched → running → final with times and the placement reason, its error, its live log."""

from __future__ import annotations

import datetime
import json
import uuid

from tests.harness import wait
from tests.web import dashboard

UTC = datetime.UTC
ERROR = "Step 4/9 : RUN pip install -r requirements.txt returned a non-zero code: 1\nERROR: No matching distribution found for torch==9.9"


async def _job(db, people, **fields) -> uuid.UUID:
    job_id = uuid.uuid4()
    created = datetime.datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
    values = {
        "id": job_id,
        "kind": "image_build",
        "status": "failed",
        "source": "api",
        "user_id": people.alice.id,
        "user_name": "alice",
        "host_name": "h07",
        "image_name": "python-dev",
        "reason": "least disk used among 3 eligible hosts",
        "error": ERROR,
        "log_tail": "Step 3/9 : COPY . /src\nStep 4/9 : RUN pip install -r requirements.txt",
        "attempts": 1,
        "created_at": created,
        "updated_at": created + datetime.timedelta(minutes=3),
        "dispatched_at": created + datetime.timedelta(seconds=2),
        "started_at": created + datetime.timedelta(seconds=5),
        "finished_at": created + datetime.timedelta(minutes=3),
        "placement": json.dumps(
            {
                "host_id": None,
                "host_name": "h07",
                "reason": "least disk used among 3 eligible hosts",
                "eligible_count": 3,
                "rejected_counts": {"cordoned": 1},
                "examined": {"hosts": 4, "whole_fleet": False, "disk_fraction_before_max": 0.31},
                "eligible": [],
                "rejected": [
                    {"host_id": str(uuid.uuid4()), "host_name": "h09", "code": "cordoned", "message": "cordoned by an operator", "detail": {}}
                ],
            }
        ),
    }
    values.update(fields)
    columns = ", ".join(values)
    marks = ", ".join(f"${i + 1}" for i in range(len(values)))
    await db.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})", *values.values())
    return job_id


async def test_a_job_opened_from_the_table_shows_its_error_timeline_and_placement(db, people, start_dashboard, page):
    job_id = await _job(db, people)
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.alice.token)
    await dashboard.search(page, "status:failed pip")
    await page.get_by_role("link", name=f"Job {job_id}").click()
    await page.get_by_role("heading", name=f"Job {job_id}").wait_for()
    assert page.url.endswith(f"#/jobs/{job_id}")

    assert await page.locator("pre.error-detail").inner_text() == ERROR
    steps = page.locator("ol.timeline li")
    assert await steps.evaluate_all("items => items.map(i => i.dataset.step)") == ["queued", "dispatched", "running", "failed"]
    assert await steps.evaluate_all("items => items.map(i => i.classList.contains('done'))") == [True, True, True, True]
    times = await steps.locator("time").evaluate_all("items => items.map(i => i.getAttribute('datetime'))")
    assert times == ["2026-03-02T09:00:00Z", "2026-03-02T09:00:02Z", "2026-03-02T09:00:05Z", "2026-03-02T09:03:00Z"]
    assert "Finished: failed" in await steps.nth(3).inner_text()
    facts = await page.locator("dl.facts").inner_text()
    assert "least disk used among 3 eligible hosts" in facts
    assert "1 cordoned" in facts
    # The counts cover the hosts examined, not the fleet, and the page says so.
    assert "3 eligible of 4 host(s) examined, the least used; the others were fuller" in facts
    assert "rejected among those examined: 1 cordoned" in facts
    # Links to the image's and the host's jobs (alice is no admin: no hosts page).
    image = page.get_by_role("link", name="python-dev")
    assert "query=image%3Apython-dev" in await image.get_attribute("href")
    assert "query=host%3Ah07" in await page.get_by_role("link", name="h07").get_attribute("href")
    await dashboard.screenshot(page, "05-job-detail")
    # Back to the search it came from.
    await page.get_by_role("link", name="← Back to the job search").click()
    await page.locator(".table-slot[data-query='status:failed pip']").wait_for()


async def test_a_running_jobs_log_tail_follows_the_agents_reports(db, people, start_dashboard, page):
    job_id = await _job(db, people, status="running", error=None, finished_at=None, log_tail="Step 1/9 : FROM debian:12")
    base = await start_dashboard()
    await page.add_init_script("sessionStorage.setItem('a4c.pollMs', '300')")
    await dashboard.sign_in(page, base, people.alice.token, at=f"#/jobs/{job_id}")
    log = page.locator("pre.log")
    await log.get_by_text("Step 1/9").wait_for()
    assert await page.locator("ol.timeline li.done").count() == 3
    await db.execute("UPDATE jobs SET log_tail = log_tail || E'\\nStep 2/9 : RUN apt-get update' WHERE id = $1", job_id)
    await log.get_by_text("Step 2/9 : RUN apt-get update").wait_for(timeout=30_000)
    await db.execute(
        "UPDATE jobs SET status = 'succeeded', finished_at = started_at + interval '1 minute', log_tail = log_tail || E'\\nSuccessfully built 0123abcd' WHERE id = $1",
        job_id,
    )
    await wait.eventually(lambda: page.locator("ol.timeline li.step-succeeded.done").count(), timeout=30, message="the final step")
    assert "Successfully built 0123abcd" in await log.inner_text()
    assert await page.locator("pre.error-detail").count() == 0


async def test_a_running_job_changes_on_screen_at_once_through_blocking_reads_not_a_poll(db, people, start_dashboard, page):
    """With polling set to ten minutes, only a blocking read (?index=&wait=) can show the change within the wait below."""
    job_id = await _job(db, people, status="running", error=None, finished_at=None, log_tail="Step 1/9 : FROM debian:12")
    base = await start_dashboard()
    await page.add_init_script("sessionStorage.setItem('a4c.pollMs', '600000')")
    blocking: list[str] = []
    page.on("request", lambda request: blocking.append(request.url) if f"/v1/jobs/{job_id}?index=" in request.url else None)
    await dashboard.sign_in(page, base, people.alice.token, at=f"#/jobs/{job_id}")
    log = page.locator("pre.log")
    await log.get_by_text("Step 1/9").wait_for()
    await wait.eventually(lambda: blocking, timeout=30, message="the page never made a blocking read")
    await db.execute("UPDATE jobs SET log_tail = log_tail || E'\\nStep 2/9 : RUN apt-get update' WHERE id = $1", job_id)
    await log.get_by_text("Step 2/9 : RUN apt-get update").wait_for(timeout=30_000)
    assert "wait=60s" in blocking[0]


async def test_a_job_of_someone_else_is_not_found_and_the_page_says_so(db, people, start_dashboard, page):
    job_id = await _job(db, people, user_id=people.bob.id, user_name="bob")
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.alice.token, at=f"#/jobs/{job_id}")
    await page.get_by_role("alert").get_by_text("Not found").wait_for()


async def test_the_link_to_a_jobs_workspace_opens_that_workspace(db, people, start_dashboard, page):
    workspace_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO workspaces (id, owner_id, name, image_ref, cpus, memory_mb, disk_gb, desired_state, observed_state)"
        " VALUES ($1, $2, 'data-lab', 'debian:12', 2, 2048, 20, 'running', 'pending')",
        workspace_id,
        people.alice.id,
    )
    job_id = await _job(db, people, kind="workspace_create", workspace_id=workspace_id, workspace_name="data-lab", image_name=None)
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.alice.token, at=f"#/jobs/{job_id}")
    await page.get_by_role("heading", name=f"Job {job_id}").wait_for()
    link = page.locator("dl.facts").get_by_role("link", name="data-lab", exact=True)
    assert await link.get_attribute("href") == f"#/workspaces/{workspace_id}"
    await link.click()
    card = page.locator(".detail-slot")
    await card.get_by_role("heading", name="Workspace data-lab").wait_for()
    assert page.url.endswith(f"#/workspaces/{workspace_id}")
    facts = await card.locator("dl.facts").inner_text()
    assert str(workspace_id) in facts and "2 CPUs, 2048 MiB memory, 20 GiB disk" in facts
    # The list beside it marks that workspace's row.
    await page.locator(f"table.workspaces tbody tr.selected[data-workspace-id='{workspace_id}']").wait_for()
