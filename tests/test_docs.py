"""Every relative link in the README and docs/ points at a file that exists.

Docs are read by operators mid-incident; a link that leads nowhere costs them
the one page they needed.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
# [text](target) outside code; the target up to an optional #anchor.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s#]+)(?:#[^)]*)?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _relative_links(page: pathlib.Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: pathlib.Path) -> None:
    broken = [t for t in _relative_links(page) if not (page.parent / t).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_the_link_pattern_finds_links() -> None:
    # The check above passes vacuously if the pattern finds nothing.
    assert sum(len(_relative_links(p)) for p in PAGES) > 20


# A path into this repository cited in code, config or docs, e.g. a comment's
# "(docs/decisions/0002-outbox-relay.md)".
CITED = re.compile(
    r"(?<![\w./-])((?:docs|controlplane|agent|shared|a4c|tests|bench|packaging|ansible|monitoring|deploy|tools)"
    r"/[\w./-]*\w\.(?:md|py|yml|yaml|json|js|css|html|service|sh|toml|j2))"
)
CITING = {".py", ".md", ".yml", ".yaml", ".js", ".j2", ".toml", ".service", ".cfg", ".ini", ".html", ".css"}
# Citations that are not of a file here: a tree listing inside monitoring/'s
# own section, and the name a lint test gives to JavaScript it pipes in.
NOT_CITATIONS = {
    ("docs/operations/monitoring.md", "ansible/prometheus-targets.yml"),
    ("tests/test_lint.py", "controlplane/web/static/js/probe.js"),
}


def _tracked() -> list[pathlib.Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).suffix in CITING]


def test_every_cited_repository_file_exists() -> None:
    broken = []
    for path in _tracked():
        if path == pathlib.Path(__file__).resolve():
            continue
        relative = str(path.relative_to(ROOT))
        for cited in set(CITED.findall(path.read_text(errors="replace"))):
            if (relative, cited) in NOT_CITATIONS:
                continue
            if not (ROOT / cited).exists() and not (path.parent / cited).exists():
                broken.append(f"{relative} cites {cited}")
    assert not broken, "\n".join(sorted(broken))


def test_decision_records_are_cited_by_their_file() -> None:
    # "ADR 0011" in prose must name a record that exists; no document outside
    # the repository ("ARCHITECTURE.md", "the seed") is cited at all.
    records = {p.name[:4] for p in (ROOT / "docs" / "decisions").glob("[0-9][0-9][0-9][0-9]-*.md")}
    assert len(records) >= 11
    problems = []
    for path in _tracked():
        if path == pathlib.Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        relative = path.relative_to(ROOT)
        problems += [f"{relative}: ADR {n} has no record" for n in re.findall(r"\bADR[ -]?(\d{4})\b", text) if n not in records]
        problems += [f"{relative}: cites {m!r}" for m in re.findall(r"ARCHITECTURE\.md|\bthe seed\b", text)]
    assert not problems, "\n".join(problems)
