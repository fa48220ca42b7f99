"""What the browser tests do to the dashboard and ask the API, in one place.

Screenshots go to ``test-artifacts/screenshots/`` (git-ignored) in every run,
so a person can look at each page after the suite.
"""

from __future__ import annotations

import pathlib
import typing

import aiohttp
from playwright import async_api as pw

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


async def screenshot(page: pw.Page, name: str, *, full_page: bool = True) -> pathlib.Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def sign_in(page: pw.Page, base: str, token: str, *, at: str = "") -> None:
    """Open the dashboard (``at``: a hash route such as ``#/hosts``) and sign in with ``token``."""
    await open_dashboard(page, base + "/" + at)
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("#top").wait_for(state="visible")


async def open_dashboard(page: pw.Page, url: str) -> None:
    """Load the dashboard and wait for its sign-in form.

    Loads cancelled under it (Chromium answers ERR_NETWORK_CHANGED whenever
    another test worker adds or removes a Docker bridge) are the page's own to
    recover from (controlplane/web/static/js/boot.js reloads, up to three
    times), so the wait covers those reloads and retries nothing itself.
    """
    await page.goto(url)
    await page.get_by_label("API token").wait_for(timeout=30_000)


async def search(page: pw.Page, text: str) -> None:
    """Type ``text`` into the search box, press Enter, and wait for that search's results."""
    box = page.get_by_label("Search jobs", exact=True)
    await box.fill(text)
    await box.press("Enter")
    await page.locator(f".table-slot[data-query='{_css_string(text)}']:not([aria-busy])").wait_for()


def _css_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


async def table_ids(page: pw.Page) -> list[str]:
    return await page.locator("table.jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.jobId)")


async def api(http: aiohttp.ClientSession, base: str, token: str, method: str, path: str, **kw: typing.Any) -> tuple[int, typing.Any]:
    async with http.request(method, base + path, headers={"Authorization": f"Bearer {token}"}, **kw) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else None)


async def api_search(http: aiohttp.ClientSession, base: str, token: str, params: list[tuple[str, str]]) -> dict[str, typing.Any]:
    status, body = await api(http, base, token, "GET", "/v1/jobs/search", params=params)
    assert status == 200, body
    return body
