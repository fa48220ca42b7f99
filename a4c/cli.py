"""``a4c``: the command line for people and scripts. Talks only to the HTTP API.

Server and token come from ``--server/--token``, else ``A4C_SERVER/A4C_TOKEN``,
else the file ``a4c login`` writes (``~/.config/a4c/config.yaml``, mode 0600).
Every command prints a table by default and the API's JSON with ``-o json``.
Exit codes are listed in :mod:`a4c.client` and docs/cli.md. Shell completion:
``eval "$(a4c completion bash)"`` (or zsh, fish).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
import typing

import click

from a4c import client as client_mod
from a4c import output, up

pass_ctx = click.make_pass_decorator(dict)

WORKSPACE_COLUMNS: list[output.Column] = [
    ("id", lambda w: output.short(w["id"])), ("name", lambda w: w["name"]), ("state", lambda w: w["observed_state"]),
    ("host", lambda w: output.short(w.get("host_id"))), ("image", lambda w: w["image_ref"]),
    ("ports", lambda w: ",".join(f"{p['container_port']}->{p['host_ip']}:{p['host_port']}" for p in w.get("published_ports") or []) or "-"),
    ("reason", lambda w: w.get("state_reason") or ""),
]
JOB_COLUMNS: list[output.Column] = [
    ("id", lambda j: output.short(j["id"])), ("kind", lambda j: j["kind"]), ("status", lambda j: j["status"]),
    ("host", lambda j: j.get("host_name")), ("user", lambda j: j.get("user_name")), ("created", lambda j: (j.get("created_at") or "")[:19]),
    ("error", lambda j: j.get("error") or j.get("reason") or ""),
]
IMAGE_COLUMNS: list[output.Column] = [
    ("id", lambda i: output.short(i["id"])), ("name", lambda i: i["name"]), ("tag", lambda i: i["tag"]),
    ("source", lambda i: "dockerfile" if i.get("dockerfile") else i.get("git_url")), ("built", lambda i: (i.get("latest_built_at") or "")[:19]),
]
HOST_COLUMNS: list[output.Column] = [
    ("id", lambda h: output.short(h["id"])), ("name", lambda h: h["name"]),
    ("status", lambda h: h["status"] + (" cordoned" if h.get("cordoned") else "") + (" draining" if h.get("draining") else "")),
    ("disk", lambda h: f"{output.gib(h['disk'].get('used_bytes'))}/{output.gib(h['disk'].get('total_bytes'))} {output.percent(h['disk'].get('used_bytes'), h['disk'].get('total_bytes'))}"),
    ("cpu", lambda h: f"{h['allocated']['cpus']}/{h['capacity']['cpus']}"),
    ("memory", lambda h: f"{h['allocated']['memory_mb']}/{h['capacity']['memory_mb']}M"),
    ("heartbeat", lambda h: (h.get("last_heartbeat_at") or "")[:19]),
]


def _api(ctx: dict[str, typing.Any]) -> client_mod.Client:
    if not ctx["server"]:
        error = client_mod.CliError("no server: pass --server, set A4C_SERVER, or run a4c login")
        error.exit_code = client_mod.USAGE
        raise error
    return client_mod.Client(ctx["server"], ctx["token"])


def _fmt(ctx: dict[str, typing.Any]) -> str:
    return ctx["output"]


class Group(click.Group):
    """Turns every CLI error into one message on stderr and its exit code; never a traceback."""

    def invoke(self, ctx: click.Context) -> typing.Any:
        try:
            return super().invoke(ctx)
        except client_mod.CliError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", envvar="A4C_SERVER", help="API URL, e.g. http://127.0.0.1:8080.")
@click.option("--token", envvar="A4C_TOKEN", help="API token (prefer a4c login or A4C_TOKEN: flags show in ps).")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def main(ctx: click.Context, server: str | None, token: str | None, fmt: str) -> None:
    """A4C: developer workspaces on bare metal."""
    saved = client_mod.load_config()
    ctx.obj = {"server": server or saved.get("server"), "token": token or saved.get("token"), "output": fmt}


main.add_command(up.command)


@main.command()
@click.option("--server", "login_server", required=True, help="API URL.")
@click.option("--token", "login_token", required=True, help="Your API token.")
@pass_ctx
def login(ctx: dict[str, typing.Any], login_server: str, login_token: str) -> None:
    """Check a token against the API and remember server and token (mode 0600)."""
    me = client_mod.Client(login_server, login_token).get("/v1/me")
    path = client_mod.save_config(login_server, login_token)
    click.echo(f"logged in to {login_server} as {me.get('name')} ({me.get('role')}); saved to {path}")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(a4c completion bash)"."""
    from click import shell_completion

    cls = shell_completion.get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "a4c", "_A4C_COMPLETE").source())


# --- lookup by id, id prefix or name ----------------------------------------------------------


def _resolve(api: client_mod.Client, collection: str, ref: str, *, what: str) -> dict[str, typing.Any]:
    if len(ref) == 36:
        return api.get(f"/v1/{collection}/{ref}")
    items: list[dict[str, typing.Any]] = []
    cursor = None
    while True:
        page = api.get(f"/v1/{collection}", limit=200, cursor=cursor)
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    matches = [i for i in items if i.get("name") == ref] or [i for i in items if i["id"].startswith(ref)]
    if not matches:
        raise client_mod.ApiError(404, "not_found", f"no {what} named or starting with {ref!r}", [])
    if len(matches) > 1:
        raise client_mod.CliError(f"{ref!r} matches {len(matches)} {what}s; give more of the id")
    return matches[0]


# --- workspaces --------------------------------------------------------------------------------


@main.group()
def workspaces() -> None:
    """Create, list and control workspaces."""


@workspaces.command("create")
@click.argument("name")
@click.option("--image", help="A registered image (a4c images list).")
@click.option("--image-ref", help="Or a Docker image reference, e.g. debian:12.")
@click.option("--cpus", type=float, default=1.0, show_default=True)
@click.option("--memory", "memory_mb", type=int, default=1024, show_default=True, help="MiB.")
@click.option("--disk", "disk_gb", type=int, default=10, show_default=True, help="GiB quota.")
@click.option("--env", "env", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--port", "ports", type=int, multiple=True, help="Container port to publish, repeatable.")
@click.option("--wait", is_flag=True, help="Show progress until it runs (exit 1 if it fails or times out).")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds --wait waits.")
@pass_ctx
def ws_create(ctx, name, image, image_ref, cpus, memory_mb, disk_gb, env, ports, wait, timeout) -> None:  # noqa: ANN001
    """Create a workspace (answers at once with its job; --wait follows it)."""
    if (image is None) == (image_ref is None):
        raise click.UsageError("give exactly one of --image or --image-ref")
    bad = [e for e in env if "=" not in e]
    if bad:
        raise click.UsageError(f"--env expects KEY=VALUE, got {bad[0]!r}")
    body = {
        "name": name, "cpus": cpus, "memory_mb": memory_mb, "disk_gb": disk_gb,
        "env": dict(e.split("=", 1) for e in env), "ports": [{"container_port": p} for p in ports],
    }
    body["image" if image else "image_ref"] = image or image_ref
    api = _api(ctx)
    accepted = api.post("/v1/workspaces", body)
    ws, job = accepted["workspace"], accepted["job"]
    if not wait:
        output.emit(accepted if _fmt(ctx) == "json" else ws, _fmt(ctx), WORKSPACE_COLUMNS)
        return
    final = _follow_workspace(api, ws["id"], job["id"], "running", timeout, quiet=_fmt(ctx) == "json")
    output.emit(final, _fmt(ctx), WORKSPACE_COLUMNS)


def _follow_workspace(api: client_mod.Client, ws_id: str, job_id: str, goal: str, timeout: float, *, quiet: bool) -> dict[str, typing.Any]:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        job = api.get(f"/v1/jobs/{job_id}")
        ws = api.get(f"/v1/workspaces/{ws_id}") if goal != "deleted" else None
        seen = (job["status"], job.get("reason"), ws and ws["observed_state"])
        if seen != last and not quiet:
            state = f", workspace {ws['observed_state']}" if ws else ""
            click.echo(f"  job {job['status']}{state}{': ' + job['reason'] if job.get('reason') else ''}", err=True)
            last = seen
        if job["status"] in ("failed", "cancelled"):
            raise client_mod.CliError(f"job {job['id']} {job['status']}: {job.get('error') or job.get('reason')}")
        if goal == "deleted" and job["status"] == "succeeded":
            return job
        if ws is not None and ws["observed_state"] == goal and job["status"] == "succeeded":
            return ws
        if ws is not None and ws["observed_state"] in ("failed", "lost"):
            raise client_mod.CliError(f"workspace {ws['name']} is {ws['observed_state']}: {ws.get('state_reason')}")
        if time.monotonic() > deadline:
            raise client_mod.CliError(f"timed out after {timeout:g}s waiting for the workspace to be {goal} (job {job['status']}: {job.get('reason') or '-'})")
        time.sleep(0.5)


@workspaces.command("list")
@click.option("--state", help="Only this observed state (running, pending, lost, …).")
@pass_ctx
def ws_list(ctx, state) -> None:  # noqa: ANN001
    """Your workspaces (all of them, for admins)."""
    page = _api(ctx).get("/v1/workspaces", limit=200, state=state)
    output.emit(page["items"], _fmt(ctx), WORKSPACE_COLUMNS, empty="no workspaces yet: a4c workspaces create NAME --image-ref IMAGE")


@workspaces.command("get")
@click.argument("ref")
@pass_ctx
def ws_get(ctx, ref) -> None:  # noqa: ANN001
    """One workspace, by name, id or id prefix."""
    output.emit(_resolve(_api(ctx), "workspaces", ref, what="workspace"), _fmt(ctx))


def _ws_action(verb: str, goal: str) -> typing.Callable[..., None]:
    @click.argument("ref")
    @click.option("--wait", is_flag=True, help=f"Wait until it is {goal}.")
    @click.option("--timeout", type=float, default=300.0, show_default=True)
    @pass_ctx
    def action(ctx, ref, wait, timeout) -> None:  # noqa: ANN001
        api = _api(ctx)
        ws = _resolve(api, "workspaces", ref, what="workspace")
        accepted = api.request("DELETE" if verb == "delete" else "POST", f"/v1/workspaces/{ws['id']}" + ("" if verb == "delete" else f"/{verb}"), None if verb == "delete" else {})
        if wait:
            _follow_workspace(api, ws["id"], accepted["job"]["id"], goal, timeout, quiet=_fmt(ctx) == "json")
        output.emit(accepted if _fmt(ctx) == "json" else accepted["job"], _fmt(ctx), JOB_COLUMNS)

    action.__doc__ = f"{verb.capitalize()} a workspace (202 + job; --wait follows it)."
    return action


for _verb, _goal in (("start", "running"), ("stop", "stopped"), ("delete", "deleted"), ("recreate", "running")):
    workspaces.command(_verb)(_ws_action(_verb, _goal))


# --- images --------------------------------------------------------------------------------------


@main.group()
def images() -> None:
    """Register, build and schedule images."""


@images.command("register")
@click.argument("name")
@click.option("--dockerfile", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path), help="A Dockerfile to build inline.")
@click.option("--git", "git_url", help="Or a git URL as the build context.")
@click.option("--ref", "git_ref", help="Git ref (branch, tag, commit).")
@click.option("--path", "git_path", help="Context directory inside the repository.")
@click.option("--shared", is_flag=True, help="Let every user run workspaces from it.")
@pass_ctx
def img_register(ctx, name, dockerfile, git_url, git_ref, git_path, shared) -> None:  # noqa: ANN001
    """Register an image from a Dockerfile or a git repository."""
    if (dockerfile is None) == (git_url is None):
        raise click.UsageError("give exactly one of --dockerfile or --git")
    body: dict[str, typing.Any] = {"name": name, "shared": shared}
    if dockerfile:
        body["dockerfile"] = dockerfile.read_text()
    else:
        body.update({k: v for k, v in (("git_url", git_url), ("git_ref", git_ref), ("git_path", git_path)) if v})
    output.emit(_api(ctx).post("/v1/images", body), _fmt(ctx), IMAGE_COLUMNS)


@images.command("list")
@pass_ctx
def img_list(ctx) -> None:  # noqa: ANN001
    """Images you own or that are shared."""
    output.emit(_api(ctx).get("/v1/images", limit=200)["items"], _fmt(ctx), IMAGE_COLUMNS, empty="no images yet: a4c images register NAME --dockerfile PATH")


@images.command("build")
@click.argument("ref")
@click.option("--follow", is_flag=True, help="Stream the build log until it ends (exit 1 if it fails).")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@pass_ctx
def img_build(ctx, ref, follow, timeout) -> None:  # noqa: ANN001
    """Build an image now."""
    api = _api(ctx)
    image = _resolve(api, "images", ref, what="image")
    jobs = api.post(f"/v1/images/{image['id']}/builds")["jobs"]
    if not follow:
        output.emit(jobs, _fmt(ctx), JOB_COLUMNS)
        return
    for job in jobs:
        final = _stream_logs(api, job["id"], timeout)
        if final["status"] != "succeeded":
            raise client_mod.CliError(f"build {final['id']} {final['status']}: {final.get('error') or final.get('reason')}")
        if _fmt(ctx) == "json":
            output.emit(final, "json")
        else:
            click.echo(f"built {image['tag']} on {final.get('host_name')}: {final.get('result', {}).get('image_id', '')}")


def _stream_logs(api: client_mod.Client, job_id: str, timeout: float) -> dict[str, typing.Any]:
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        job = api.get(f"/v1/jobs/{job_id}")
        tail = job.get("log_tail") or ""
        # The API keeps the last 64 KiB: print what is new since the last poll.
        new = tail[len(shown):] if tail.startswith(shown) else tail[-2000:]
        if new:
            click.echo(new, nl=False, err=True)
        shown = tail
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise client_mod.CliError(f"timed out after {timeout:g}s; the job is {job['status']}")
        time.sleep(0.5)


@images.command("schedule")
@click.argument("ref")
@click.option("--cron", required=True, help="Five-field cron expression, e.g. '0 3 * * *'.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Berlin.")
@pass_ctx
def img_schedule(ctx, ref, cron, timezone) -> None:  # noqa: ANN001
    """Rebuild an image on a cron schedule; shows the next runs."""
    api = _api(ctx)
    image = _resolve(api, "images", ref, what="image")
    made = api.post(f"/v1/images/{image['id']}/schedules", {"cron": cron, "timezone": timezone})
    if _fmt(ctx) == "json":
        output.emit(made, "json")
        return
    click.echo(f"schedule {made['id']}: {cron} ({timezone}); next runs:")
    for run in made.get("next_runs", []):
        click.echo(f"  {run}")


# --- jobs ---------------------------------------------------------------------------------------


@main.group()
def jobs() -> None:
    """Search jobs and read their logs."""


@jobs.command("search")
@click.argument("query", default="")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--all", "follow_all", is_flag=True, help="Follow cursors to the last page.")
@pass_ctx
def jobs_search(ctx, query, limit, follow_all) -> None:  # noqa: ANN001
    """Search with the dashboard's syntax: 'status:failed host:h1 "no space"'."""
    api = _api(ctx)
    items: list[dict[str, typing.Any]] = []
    cursor = None
    answer: dict[str, typing.Any] = {}
    while True:
        answer = api.get("/v1/jobs/search", query=query or None, limit=limit, cursor=cursor, facets="false")
        items += answer["jobs"]
        cursor = answer.get("next_cursor")
        if not follow_all or not cursor:
            break
    if _fmt(ctx) == "json":
        output.emit({**answer, "jobs": items}, "json")
        return
    output.emit(items, "table", JOB_COLUMNS, empty="no jobs match")
    if answer.get("degraded") or answer.get("backend") == "postgresql":
        click.echo(f"(served by {answer.get('backend')})", err=True)


@jobs.command("get")
@click.argument("job_id")
@pass_ctx
def jobs_get(ctx, job_id) -> None:  # noqa: ANN001
    """One job: status, timestamps, host, reason, error."""
    job = _api(ctx).get(f"/v1/jobs/{job_id}")
    if _fmt(ctx) != "json":
        job = {k: v for k, v in job.items() if k not in ("log_tail", "payload")}
    output.emit(job, _fmt(ctx))


@jobs.command("logs")
@click.argument("job_id")
@click.option("--follow", is_flag=True, help="Keep printing until the job ends.")
@pass_ctx
def jobs_logs(ctx, job_id, follow) -> None:  # noqa: ANN001
    """A job's log tail (builds stream theirs here)."""
    api = _api(ctx)
    if follow:
        _stream_logs(api, job_id, 24 * 3600)
        return
    click.echo(api.get(f"/v1/jobs/{job_id}").get("log_tail") or "", nl=False)


# --- hosts -----------------------------------------------------------------------------------------


@main.group()
def hosts() -> None:
    """The fleet (admins)."""


@hosts.command("list")
@pass_ctx
def hosts_list(ctx) -> None:  # noqa: ANN001
    """Hosts with status, disk use, allocation and last heartbeat."""
    output.emit(_api(ctx).get("/v1/hosts", limit=200)["items"], _fmt(ctx), HOST_COLUMNS, empty="no hosts: enrol an agent (a4c admin enrolment-tokens create)")


def _host_action(verb: str) -> typing.Callable[..., None]:
    @click.argument("ref")
    @pass_ctx
    def action(ctx, ref) -> None:  # noqa: ANN001
        api = _api(ctx)
        host = _resolve(api, "hosts", ref, what="host")
        answer = api.post(f"/v1/hosts/{host['id']}/{verb}")
        if _fmt(ctx) == "json" or verb != "drain":
            output.emit(answer, _fmt(ctx), None if verb == "drain" else HOST_COLUMNS)
            return
        remaining = answer.get("workspaces") or []
        click.echo(f"{host['name']} is cordoned; {len(remaining)} workspace(s) still live there:")
        for ws in remaining:
            click.echo(f"  {ws.get('name')} ({ws.get('id')}) {ws.get('observed_state', '')}")

    action.__doc__ = {"cordon": "Stop placing new workspaces on a host.", "uncordon": "Allow placements again.",
                      "drain": "Cordon, and list the workspaces still living there (nothing is moved)."}[verb]
    return action


for _verb in ("cordon", "uncordon", "drain"):
    hosts.command(_verb)(_host_action(_verb))


# --- admin -------------------------------------------------------------------------------------------


@main.group()
def admin() -> None:
    """Users, API tokens and agent enrolment tokens (admins)."""


@admin.group("users")
def admin_users() -> None:
    """Users."""


@admin_users.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["user", "admin"]), default="user", show_default=True)
@pass_ctx
def users_create(ctx, name, role) -> None:  # noqa: ANN001
    output.emit(_api(ctx).post("/v1/users", {"name": name, "role": role}), _fmt(ctx))


@admin_users.command("list")
@pass_ctx
def users_list(ctx) -> None:  # noqa: ANN001
    output.emit(_api(ctx).get("/v1/users", limit=200)["items"], _fmt(ctx), [("id", lambda u: u["id"]), ("name", lambda u: u["name"]), ("role", lambda u: u["role"])])


@admin.group("tokens")
def admin_tokens() -> None:
    """API tokens (shown once when issued)."""


@admin_tokens.command("create")
@click.argument("user")
@click.option("--name", default="", help="What the token is for.")
@pass_ctx
def tokens_create(ctx, user, name) -> None:  # noqa: ANN001
    api = _api(ctx)
    found = _resolve(api, "users", user, what="user")
    output.emit(api.post(f"/v1/users/{found['id']}/tokens", {"name": name}), _fmt(ctx))


@admin_tokens.command("revoke")
@click.argument("token_id")
@pass_ctx
def tokens_revoke(ctx, token_id) -> None:  # noqa: ANN001
    output.emit(_api(ctx).delete(f"/v1/tokens/{token_id}"), _fmt(ctx))


@admin.group("enrolment-tokens")
def admin_enrol() -> None:
    """Tokens agents enrol with (give one to the Ansible role)."""


@admin_enrol.command("create")
@click.option("--description", default="")
@click.option("--max-uses", type=click.IntRange(1), help="Default: unlimited (a fleet-wide token).")
@pass_ctx
def enrol_create(ctx, description, max_uses) -> None:  # noqa: ANN001
    output.emit(_api(ctx).post("/v1/enrolment-tokens", {"description": description, "max_uses": max_uses}), _fmt(ctx))


@admin_enrol.command("list")
@pass_ctx
def enrol_list(ctx) -> None:  # noqa: ANN001
    output.emit(_api(ctx).get("/v1/enrolment-tokens", limit=200)["items"], _fmt(ctx),
                [("id", lambda t: t["id"]), ("description", lambda t: t.get("description")), ("uses", lambda t: t.get("uses")), ("revoked", lambda t: t.get("revoked_at"))])


@admin_enrol.command("revoke")
@click.argument("token_id")
@pass_ctx
def enrol_revoke(ctx, token_id) -> None:  # noqa: ANN001
    output.emit(_api(ctx).delete(f"/v1/enrolment-tokens/{token_id}"), _fmt(ctx))


if __name__ == "__main__":  # pragma: no cover
    main()
