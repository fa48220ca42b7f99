"""``a4c jobs``: search with the dashboard's syntax, get one, read (or follow) its log, cancel one.

The query text goes to the API unchanged (``GET /v1/jobs/search?query=``),
which parses it exactly as the dashboard's search box does:
``status:failed host:h1 "no space"``, ``-status:succeeded``, ``since:1h``…
A mistake in it is a 422 naming the token (exit 6).
"""

from __future__ import annotations

import re

import click

from a4c import errors, follow, lookup, output
from a4c.session import Group, Session, pass_session

COLUMNS: list[output.Column] = [
    ("id", lambda j: output.short(j["id"])),
    ("kind", lambda j: j["kind"]),
    ("status", lambda j: j["status"]),
    ("host", lambda j: j.get("host_name")),
    ("user", lambda j: j.get("user_name")),
    ("target", lambda j: j.get("workspace_name") or j.get("image_name")),
    ("created (UTC)", lambda j: output.when(j.get("created_at"))),
    ("error", lambda j: j.get("error") or ("" if j["status"] in ("succeeded", "running") else j.get("reason"))),
]


@click.group(cls=Group)
def jobs() -> None:
    """Search jobs, and read their details and logs."""


def query_text(words: tuple[str, ...]) -> str:
    """One argument is the query as typed; several are joined, re-quoting those the shell unquoted ("no space")."""
    if len(words) == 1:
        return words[0]
    return " ".join(f'"{w}"' if re.search(r"\s", w) and not w.startswith('"') else w for w in words)


@jobs.command("search")
@click.argument("query", nargs=-1)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Jobs per page.")
@click.option("--all", "every_page", is_flag=True, help="Follow the cursors to the last page.")
@click.option("--facets", is_flag=True, help="Include the facet counts (with -o json).")
@pass_session
def search(session: Session, query: tuple[str, ...], limit: int, every_page: bool, facets: bool) -> None:
    """Search jobs: a4c jobs search 'status:failed host:h1 "no space"'."""
    api = session.api()
    text = query_text(query)
    found: list[dict] = []
    cursor = None
    while True:
        page = api.get("/v1/jobs/search", query=text, limit=limit, cursor=cursor, facets=facets)
        found += page["jobs"]
        cursor = page.get("next_cursor")
        if not every_page or not cursor:
            break
    session.emit({**page, "jobs": found}, COLUMNS, table=found, empty="no jobs match")
    if not session.json:
        total = f"{page['total']}" if page.get("total_exact", True) else f"at least {page['total']}"
        more = "; more with --all" if page.get("next_cursor") else ""
        backend = f"; served by {page.get('backend')}{' (Elasticsearch did not answer)' if page.get('degraded') else ''}"
        session.note(f"{len(found)} of {total} jobs{more}{backend}")


@jobs.command("get")
@click.argument("ref")
@pass_session
def get(session: Session, ref: str) -> None:
    """One job (by id or id prefix): status, timestamps, host, reason, error."""
    job = lookup.job(session.api(), ref)
    shown = {k: v for k, v in job.items() if k != "log_tail"}
    session.emit(job, table=shown)
    if not session.json and job.get("log_tail"):
        session.note(f"log: a4c jobs logs {output.short(job['id'])}")


@jobs.command("logs")
@click.argument("ref")
@click.option("--follow", "follow_log", is_flag=True, help="Keep printing as the log grows until the job ends; exit 1 if it fails.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=3600.0, show_default=True, help="Seconds --follow waits.")
@pass_session
def logs(session: Session, ref: str, follow_log: bool, timeout: float) -> None:
    """A job's log tail (the API keeps the last part of each log)."""
    api = session.api()
    job = lookup.job(api, ref)
    if follow_log:
        # The log is what was asked for (stdout), unless stdout is reserved for the JSON.
        [job] = follow.follow_jobs(api, [job], timeout, session.note if session.json else click.echo, session.note)
    if session.json:
        session.emit(job)
    elif not follow_log:
        click.echo(job.get("log_tail") or "", nl=False)
    if follow_log and job["status"] != "succeeded":
        raise errors.Failed(f"job {output.short(job['id'])} {job['status']}: {job.get('error') or job.get('reason') or 'no error text'}")


@jobs.command("cancel")
@click.argument("ref")
@pass_session
def cancel(session: Session, ref: str) -> None:
    """Cancel a build or cleanup (by id or id prefix) that has not ended. A workspace's jobs end with its stop or delete."""
    api = session.api()
    job = api.post(f"/v1/jobs/{lookup.job(api, ref)['id']}/cancel")
    session.emit(job, table={k: job.get(k) for k in ("id", "kind", "status", "reason", "image_name", "host_name")})
