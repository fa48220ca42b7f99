"""The workspaces page: create from the form (checked first, the API's field errors beside the fields), stop and start, delete with a confirmation."""

from __future__ import annotations

import json
import typing
import uuid

import pytest
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import engine as db_engine
from controlplane.events import consumer
from shared import messages
from tests.harness import wait
from tests.web import dashboard


async def _fill(
    page, name: str, *, image_ref: str | None = "debian:12", image: str | None = None, cpus: str = "1", memory: str = "512", disk: str = "5"
) -> None:
    await page.get_by_label("Name", exact=True).fill(name)
    if image is not None:
        await page.get_by_label("A registered image").check()
        await page.get_by_label("Registered image", exact=True).fill(image)
    else:
        await page.get_by_label("Docker reference", exact=True).fill(image_ref or "")
    await page.get_by_label("CPUs").fill(cpus)
    await page.get_by_label("Memory (MiB)").fill(memory)
    await page.get_by_label("Disk (GiB)").fill(disk)


async def test_a_workspace_created_in_the_form_appears_and_can_be_deleted_after_confirming(db, people, start_dashboard, page, http):
    base = await start_dashboard()
    await dashboard.sign_in(page, base, people.alice.token, at="#/workspaces")
    await page.get_by_text("You have no workspaces yet.").wait_for()
    await _fill(page, "web-dev")
    await page.get_by_label("Ports").fill("8080, 5353/udp")
    await page.get_by_label("Environment").fill("EDITOR=vim\nLANG=C.UTF-8")
    await page.get_by_role("button", name="Create workspace").click()
    row = page.locator("table.workspaces tbody tr", has_text="web-dev")
    await row.wait_for()
    await page.locator(".notice-slot").get_by_text("Workspace web-dev created").wait_for()

    status, listed = await dashboard.api(http, base, people.alice.token, "GET", "/v1/workspaces")
    assert status == 200
    [made] = listed["items"]
    assert (made["name"], made["image_ref"], made["cpus"], made["memory_mb"], made["disk_gb"]) == ("web-dev", "debian:12", 1.0, 512, 5)
    assert made["env"] == {"EDITOR": "vim", "LANG": "C.UTF-8"}
    assert made["ports"] == [{"container_port": 8080, "protocol": "tcp"}, {"container_port": 5353, "protocol": "udp"}]
    # No agent runs here: it waits for a host, and the page says why.
    assert await row.get_attribute("data-state") == "pending"
    assert made["state_reason"] in await row.inner_text()
    await dashboard.screenshot(page, "06-workspaces")

    # Its own view: resources, environment, and a link to its jobs.
    await row.get_by_role("link", name="web-dev").click()
    card = page.locator(".detail-slot")
    await card.get_by_role("heading", name="Workspace web-dev").wait_for()
    assert "1 CPUs, 512 MiB memory, 5 GiB disk" in await card.inner_text()
    assert "EDITOR=vim" in await card.inner_text()
    jobs_link = card.get_by_role("link", name="Jobs of this workspace")
    assert await jobs_link.get_attribute("href") == f"#/jobs?query=workspace%3A{made['id']}"
    row = page.locator("table.workspaces tbody tr", has_text="web-dev")

    # Cancelling the confirmation changes nothing.
    await row.get_by_role("button", name="Delete web-dev").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_text("Delete workspace web-dev?").wait_for()
    await dialog.get_by_role("button", name="Cancel").click()
    assert await row.count() == 1
    await row.get_by_role("button", name="Delete web-dev").click()
    await dashboard.screenshot(page, "07-workspaces-confirm-delete")
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await row.wait_for(state="detached")
    await page.get_by_text("You have no workspaces yet.").wait_for()
    status, listed = await dashboard.api(http, base, people.alice.token, "GET", "/v1/workspaces")
    assert listed["items"] == []


async def test_the_form_checks_the_input_before_sending_and_shows_the_apis_field_errors(db, people, start_dashboard, page, http):
    base = await start_dashboard()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await dashboard.sign_in(page, base, people.alice.token, at="#/workspaces")
    await page.get_by_role("button", name="Create workspace").wait_for()

    # Checked in the browser against the API's contract: nothing is sent.
    await _fill(page, "Not A Name", cpus="0", memory="8")
    await page.get_by_role("button", name="Create workspace").click()
    assert await page.locator("#ws-name-error").inner_text() == "does not have the expected form"
    assert await page.locator("#ws-cpus-error").inner_text() == "more than 0"
    assert await page.locator("#ws-memory_mb-error").inner_text() == "at least 16"
    assert await page.get_by_label("Name", exact=True).get_attribute("aria-invalid") == "true"
    assert await page.evaluate("document.activeElement.id") == "ws-name"
    assert posts == []

    # Well-formed, but the API knows no such registered image: its reason appears beside that field.
    await _fill(page, "data-lab", image="no-such-image")
    await page.get_by_role("button", name="Create workspace").click()
    await page.locator("#ws-image-error").get_by_text("no registered image named 'no-such-image'").wait_for()
    assert await page.locator("#ws-name-error").inner_text() == ""
    assert len(posts) == 1
    await dashboard.screenshot(page, "08-workspaces-field-errors")

    # A name already taken (409) is reported beside the name.
    status, _ = await dashboard.api(
        http,
        base,
        people.alice.token,
        "POST",
        "/v1/workspaces",
        json={"name": "taken", "image_ref": "debian:12", "cpus": 1, "memory_mb": 64, "disk_gb": 1},
    )
    assert status == 202
    await page.get_by_label("A Docker reference").check()
    await _fill(page, "taken")
    await page.get_by_role("button", name="Create workspace").click()
    await page.locator("#ws-name-error").get_by_text("you already have a workspace named 'taken'").wait_for()


async def test_an_admin_sees_every_users_workspaces_with_their_owners(db, people, start_dashboard, page, http):
    base = await start_dashboard()
    for person, name in ((people.alice, "alice-box"), (people.bob, "bob-box")):
        status, _ = await dashboard.api(
            http,
            base,
            person.token,
            "POST",
            "/v1/workspaces",
            json={"name": name, "image_ref": "debian:12", "cpus": 1, "memory_mb": 64, "disk_gb": 1},
        )
        assert status == 202
    await dashboard.sign_in(page, base, people.admin.token, at="#/workspaces")
    rows = page.locator("table.workspaces tbody tr")
    await wait.eventually(lambda: _count_is(rows, 2), message="both users' workspaces")
    text = await page.locator("table.workspaces").inner_text()
    assert "alice-box" in text and "bob-box" in text and "alice" in text and "bob" in text
    # A user sees only their own.
    await page.get_by_role("button", name="Sign out").click()
    await dashboard.sign_in(page, base, people.bob.token, at="#/workspaces")
    await page.locator("table.workspaces tbody tr", has_text="bob-box").wait_for()
    assert await page.locator("table.workspaces tbody tr").count() == 1


async def _count_is(locator, n: int) -> bool:
    return await locator.count() == n


class _Agent:
    """Stands in for the agent of one host: takes that host's commands from the outbox and reports back
    the way the agent does (a workspace state, then the job's result), signed with the host's key and
    applied by the control plane's event consumer."""

    def __init__(self, db, engine, host) -> None:
        self.db, self.engine, self.host = db, engine, host
        self.keys = consumer.HostKeys(engine)
        self.seq = 0
        self.seen: set[int] = set()

    async def command(self, kind: str) -> messages.WorkspaceRef:
        """The next command of ``kind`` sent to this host (waits for it)."""

        async def sent():
            rows = await self.db.fetch("SELECT id, payload FROM outbox WHERE topic = $1 AND kind = $2 ORDER BY id", f"commands.{self.host.id}", kind)
            return next((r for r in rows if r["id"] not in self.seen), None)

        row = await wait.eventually(sent, timeout=10, message=f"a {kind} command to {self.host.name}")
        self.seen.add(row["id"])
        body = json.loads(row["payload"])["payload"]
        return messages.WorkspaceRef(job_id=body["job_id"], workspace_id=body.get("workspace_id") or body["spec"]["workspace_id"])

    async def done(self, ref: messages.WorkspaceRef, state: typing.Literal["running", "stopped", "exited"]) -> None:
        assert ref.job_id is not None
        container = "c0ffee" + ref.workspace_id.replace("-", "")[:6]
        reports = [
            (messages.EventKind.WORKSPACE_STATE, messages.WorkspaceState(workspace_id=ref.workspace_id, state=state, container_id=container)),
            (
                messages.EventKind.JOB_RESULT,
                messages.JobResult(job_id=ref.job_id, ok=True, result={"state": state, "container_id": container, "ports": []}),
            ),
        ]
        for kind, payload in reports:
            self.seq += 1
            raw = messages.encode(kind, str(self.host.id), self.seq, payload, self.host.signing_key)
            assert await consumer.handle(raw, self.engine, self.keys) is kind


@pytest.fixture
async def events_engine(database_url):
    engine = sa_asyncio.create_async_engine(db_engine.async_url(database_url))
    yield engine
    await engine.dispose()


async def test_a_running_workspace_is_stopped_and_started_again_from_its_row_after_confirming(
    db, people, start_dashboard, page, http, add_host, events_engine
):
    host = await add_host("h-ws01")
    agent = _Agent(db, events_engine, host)
    base = await start_dashboard()
    status, made = await dashboard.api(
        http,
        base,
        people.alice.token,
        "POST",
        "/v1/workspaces",
        json={"name": "web-dev", "image_ref": "debian:12", "cpus": 1, "memory_mb": 512, "disk_gb": 5},
    )
    assert status == 202 and made["workspace"]["host_id"] == str(host.id), made
    ws_id = made["workspace"]["id"]
    create = await agent.command("workspace.create")
    assert create.workspace_id == ws_id
    await agent.done(create, "running")

    await page.add_init_script("sessionStorage.setItem('a4c.pollMs', '300')")
    await dashboard.sign_in(page, base, people.alice.token, at="#/workspaces")
    row = page.locator(f"table.workspaces tbody tr[data-workspace-id='{ws_id}']")
    in_state = lambda state: page.locator(f"table.workspaces tbody tr[data-workspace-id='{ws_id}'][data-state='{state}']")  # noqa: E731
    await in_state("running").wait_for()
    assert await row.get_by_role("button", name="Start web-dev").count() == 0

    async def confirm(verb: str) -> None:
        """Click the row's button, confirm in the dialog, see the API accept it."""
        await row.get_by_role("button", name=f"{verb} web-dev").click()
        dialog = page.get_by_role("dialog")
        await dialog.get_by_text(f"{verb} workspace web-dev?").wait_for()
        await dialog.get_by_role("button", name=verb, exact=True).click()
        await page.locator(".notice-slot").get_by_text(f"{verb} of web-dev accepted").wait_for()

    async def settled(state: str, offered: str, withdrawn: str) -> None:
        """The row shows ``state`` with only the button that makes sense there, and the API agrees."""
        await in_state(state).wait_for()
        await row.get_by_role("button", name=f"{offered} web-dev").wait_for()
        assert await row.get_by_role("button", name=f"{withdrawn} web-dev").count() == 0
        _status, shown = await dashboard.api(http, base, people.alice.token, "GET", f"/v1/workspaces/{ws_id}")
        assert (shown["desired_state"], shown["observed_state"]) == (state, state)

    # Stop: asked first; the command goes to its host; the row turns "stopped" once the agent reports it.
    await confirm("Stop")
    stop = await agent.command("workspace.stop")
    assert stop.workspace_id == ws_id
    # Wanted stopped, still running until the agent says otherwise.
    await row.get_by_text("→ stopped").wait_for()
    assert await row.get_attribute("data-state") == "running"
    await agent.done(stop, "stopped")
    await settled("stopped", offered="Start", withdrawn="Stop")
    await dashboard.screenshot(page, "09-workspaces-stopped")

    # Start: the same way back to running.
    await confirm("Start")
    start = await agent.command("workspace.start")
    assert start.workspace_id == ws_id and start.job_id != stop.job_id
    await agent.done(start, "running")
    await settled("running", offered="Stop", withdrawn="Start")


async def test_a_shown_workspace_changes_on_screen_through_blocking_reads_and_says_when_it_is_deleted(db, people, start_dashboard, page):
    """With polling set to ten minutes, only a blocking read (?index=&wait=) can show the changes within the waits below."""
    workspace_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO workspaces (id, owner_id, name, image_ref, cpus, memory_mb, disk_gb, desired_state, observed_state, state_reason)"
        " VALUES ($1, $2, 'watched', 'debian:12', 1, 512, 5, 'running', 'pending', 'waiting for a host')",
        workspace_id,
        people.alice.id,
    )
    base = await start_dashboard()
    await page.add_init_script("sessionStorage.setItem('a4c.pollMs', '600000')")
    blocking: list[str] = []
    page.on("request", lambda request: blocking.append(request.url) if f"/v1/workspaces/{workspace_id}?index=" in request.url else None)
    await dashboard.sign_in(page, base, people.alice.token, at=f"#/workspaces/{workspace_id}")
    card = page.locator(".detail-slot")
    await card.get_by_text("waiting for a host").wait_for()
    # The page is blocked on the workspace when the change comes: a change the first read saw proves nothing.
    await wait.eventually(lambda: blocking, timeout=30, message="the page never made a blocking read")
    await db.execute("UPDATE workspaces SET state_reason = 'placed on h1 by the test' WHERE id = $1", workspace_id)
    await card.get_by_text("placed on h1 by the test").wait_for(timeout=30_000)
    await db.execute("UPDATE workspaces SET deleted_at = now(), observed_state = 'deleted' WHERE id = $1", workspace_id)
    await card.get_by_text("This workspace has been deleted.").wait_for(timeout=30_000)
