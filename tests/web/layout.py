"""Layout checks the browser tests share: at each width every action button is visible, on top and clickable.

A button is "on top" when ``document.elementFromPoint`` at its centre is the
button itself (or something inside it): a panel painted over it, or a table
clipped by its container, fails this where a DOM-only check would pass.
"""

from __future__ import annotations

import typing

from playwright import async_api as pw

WIDTHS = (1000, 1280, 1400, 1920)

_COVERED = """
(selector) => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) problems.push(`the page scrolls sideways: ${root.scrollWidth} px in ${root.clientWidth} px`);
  for (const b of document.querySelectorAll(selector)) {
    const label = b.getAttribute("aria-label") || b.textContent;
    b.scrollIntoView({ block: "center", inline: "nearest" });
    const r = b.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) { problems.push(`${label}: not rendered`); continue; }
    if (r.left < 0 || r.right > root.clientWidth) problems.push(`${label}: outside the viewport (${Math.round(r.left)}..${Math.round(r.right)} px)`);
    const at = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!(at && (at === b || b.contains(at)))) problems.push(`${label}: covered by ${at ? at.outerHTML.slice(0, 100) : "nothing"}`);
  }
  return problems;
}
"""

_OVERLAP = """
([a, b]) => {
  const x = document.querySelector(a)?.getBoundingClientRect();
  const y = document.querySelector(b)?.getBoundingClientRect();
  if (!x || !y) return null;
  return x.left < y.right && y.left < x.right && x.top < y.bottom && y.top < x.bottom;
}
"""


async def uncovered_buttons(page: pw.Page, selector: str) -> list[str]:
    """What is wrong with the buttons ``selector`` finds (empty when each is visible and on top at its centre)."""
    return typing.cast(list[str], await page.evaluate(_COVERED, selector))


async def overlap(page: pw.Page, first: str, second: str) -> bool | None:
    """Whether the boxes of two elements intersect (None when one is missing)."""
    return typing.cast(bool | None, await page.evaluate(_OVERLAP, [first, second]))


async def clickable(page: pw.Page, selector: str) -> int:
    """Playwright's own actionability check (visible, stable, enabled, receives the pointer) on each button; returns how many."""
    buttons = page.locator(selector)
    count = await buttons.count()
    for n in range(count):
        await buttons.nth(n).click(trial=True, timeout=5_000)
    return count
