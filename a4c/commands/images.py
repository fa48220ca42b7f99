"""``a4c images``: register (a Dockerfile or a git context), list, get, update, delete, build (following the log),
schedule, and switch schedules off, on or away.

A build is one job per active host (images are built where they run).
``build --follow`` prints each job's log as it grows (on stderr, prefixed by
host when there are several) and exits 1 when a build fails, printing its
error line.
"""

from __future__ import annotations

import pathlib
import typing

import click

from a4c import complete, errors, follow, lookup, output, progress
from a4c.commands import jobs as job_commands
from a4c.session import Group, Session, pass_session

COLUMNS: list[output.Column] = [
    ("id", lambda i: output.short(i["id"])),
    ("name", lambda i: i["name"]),
    ("source", lambda i: "Dockerfile" if i.get("dockerfile") else f"{i.get('git_url')}@{i.get('git_ref') or 'HEAD'}:{i.get('git_path') or '.'}"),
    ("shared", lambda i: "yes" if i.get("shared") else "no"),
    ("tag", lambda i: i["tag"]),
    ("built", lambda i: output.when(i.get("latest_built_at"))),
]
SCHEDULE_COLUMNS: list[output.Column] = [
    ("id", lambda s: output.short(s["id"])),
    ("cron", lambda s: s["cron"]),
    ("timezone", lambda s: s["timezone"]),
    ("enabled", lambda s: "yes" if s["enabled"] else "no"),
    ("next run (UTC)", lambda s: output.when(s.get("next_run_at"))),
    ("last run (UTC)", lambda s: output.when(s.get("last_run_at"))),
]

REF = click.argument("ref", shell_complete=complete.names("images"))


@click.group(cls=Group)
def images() -> None:
    """Register, change, build, schedule and delete the images workspaces run."""


@images.command("register")
@click.argument("name")
@click.option(
    "--dockerfile", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path), help="A Dockerfile, sent inline (no build context)."
)
@click.option("--git", "git_url", metavar="URL", help="Or a git repository as the build context.")
@click.option("--ref", "git_ref", help="Branch, tag or commit (default HEAD).")
@click.option("--path", "git_path", help="Context directory inside the repository (default: its root).")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="Docker build argument; repeatable.")
@click.option("--shared", is_flag=True, help="Let every user run workspaces from it.")
@pass_session
def register(
    session: Session,
    name: str,
    dockerfile: pathlib.Path | None,
    git_url: str | None,
    git_ref: str | None,
    git_path: str | None,
    build_args: tuple[str, ...],
    shared: bool,
) -> None:
    """Register image NAME from --dockerfile PATH or --git URL [--ref REF] [--path DIR]."""
    if (dockerfile is None) == (git_url is None):
        raise click.UsageError("give exactly one of --dockerfile PATH or --git URL")
    if dockerfile is not None and (git_ref or git_path):
        raise click.UsageError("--ref and --path go with --git, not --dockerfile")
    body: dict[str, typing.Any] = {"name": name, "shared": shared, "build_args": _pairs(build_args)}
    if dockerfile is not None:
        body["dockerfile"] = _read(dockerfile)
    else:
        body.update({k: v for k, v in (("git_url", git_url), ("git_ref", git_ref), ("git_path", git_path)) if v})
    session.emit(session.api().post("/v1/images", body), COLUMNS)


def _read(dockerfile: pathlib.Path) -> str:
    try:
        return dockerfile.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {dockerfile}: {exc}", param_hint="--dockerfile") from None


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--build-arg")
        pairs[key] = value
    return pairs


@images.command("list")
@pass_session
def list_(session: Session) -> None:
    """Images you own or that are shared."""
    session.emit(session.api().items("/v1/images"), COLUMNS, empty="no images: a4c images register NAME --dockerfile PATH")


@images.command("get")
@REF
@pass_session
def get(session: Session, ref: str) -> None:
    """One image by name, id or id prefix (with its Dockerfile or git context)."""
    session.emit(lookup.image(session.api(), ref))


@images.command("build")
@REF
@click.option("--follow", "follow_log", is_flag=True, help="Stream the build log until it ends; exit 1 if a build fails.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=3600.0, show_default=True, help="Seconds --follow waits.")
@pass_session
def build(session: Session, ref: str, follow_log: bool, timeout: float) -> None:
    """Build an image now, on every active host."""
    api = session.api()
    image = lookup.image(api, ref)
    answer = api.post(f"/v1/images/{image['id']}/builds")
    jobs = answer["jobs"]
    if not follow_log:
        session.emit(answer, job_commands.COLUMNS, table=jobs)
        return
    session.note(f"building {image['name']} on {', '.join(j.get('host_name') or output.short(j['id']) for j in jobs)}")
    final = follow.follow_jobs(api, jobs, timeout, session.note, session.note)
    session.emit({"jobs": final}, job_commands.COLUMNS, table=final)
    failures = [v.failure for v in map(progress.build_verdict, final) if v.failure]
    if failures:
        raise errors.Failed("\n".join(failures))


@images.command("schedule")
@REF
@click.option("--cron", required=True, help="Five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone the cron expression is read in, e.g. Europe/Berlin.")
@click.option("--disabled", is_flag=True, help="Create it switched off.")
@pass_session
def schedule(session: Session, ref: str, cron: str, timezone: str, disabled: bool) -> None:
    """Rebuild an image on a cron schedule; prints the next runs."""
    api = session.api()
    image = lookup.image(api, ref)
    made = api.post(f"/v1/images/{image['id']}/schedules", {"cron": cron, "timezone": timezone, "enabled": not disabled})
    if session.json:
        session.emit(made)
        return
    click.echo(f"schedule {output.short(made['id'])} for {image['name']}: '{made['cron']}' in {made['timezone']}; next runs:")
    for run in made.get("next_runs") or []:
        click.echo(f"  {output.local(run, made['timezone'])}")


@images.command("schedules")
@REF
@pass_session
def schedules(session: Session, ref: str) -> None:
    """An image's rebuild schedules with their next run."""
    api = session.api()
    image = lookup.image(api, ref)
    answer = api.get(f"/v1/images/{image['id']}/schedules")
    session.emit(answer, SCHEDULE_COLUMNS, table=answer["items"], empty=f"no schedules: a4c images schedule {image['name']} --cron '0 3 * * *'")


@images.command("update")
@REF
@click.option(
    "--dockerfile", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path), help="Build from this Dockerfile now (drops a git context)."
)
@click.option("--git", "git_url", metavar="URL", help="Build from this git repository now (drops an inline Dockerfile).")
@click.option("--ref", "git_ref", help="Branch, tag or commit of the git context.")
@click.option("--path", "git_path", help="Context directory inside the repository.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="Replaces all build arguments; repeatable.")
@click.option("--no-build-args", is_flag=True, help="Remove every build argument.")
@click.option("--shared/--private", default=None, help="Let every user run workspaces from it, or only you.")
@pass_session
def update(
    session: Session,
    ref: str,
    dockerfile: pathlib.Path | None,
    git_url: str | None,
    git_ref: str | None,
    git_path: str | None,
    build_args: tuple[str, ...],
    no_build_args: bool,
    shared: bool | None,
) -> None:
    """Change an image's Dockerfile, git context, build arguments or sharing; the next build uses it."""
    if dockerfile is not None and git_url is not None:
        raise click.UsageError("give at most one of --dockerfile PATH or --git URL")
    if build_args and no_build_args:
        raise click.UsageError("--build-arg and --no-build-args exclude each other")
    body: dict[str, typing.Any] = {k: v for k, v in (("git_url", git_url), ("git_ref", git_ref), ("git_path", git_path)) if v}
    if dockerfile is not None:
        body["dockerfile"] = _read(dockerfile)
    if build_args or no_build_args:
        body["build_args"] = _pairs(build_args)
    if shared is not None:
        body["shared"] = shared
    if not body:
        raise click.UsageError("nothing to change: give --dockerfile, --git, --ref, --path, --build-arg, --no-build-args, --shared or --private")
    api = session.api()
    image = lookup.image(api, ref)
    changed = api.request("PATCH", f"/v1/images/{image['id']}", body=body)
    session.emit(changed, COLUMNS)
    session.note(f"the next build uses it: a4c images build {image['name']}")


@images.command("delete")
@REF
@pass_session
def delete(session: Session, ref: str) -> None:
    """Delete an image and its schedules; refused (exit 1, naming them) while workspaces use it or a build of it runs."""
    api = session.api()
    image = lookup.image(api, ref)
    api.delete(f"/v1/images/{image['id']}")
    if session.json:
        session.emit({"deleted": image["id"]})
    else:
        click.echo(f"deleted image {image['name']} ({output.short(image['id'])})")


SCHEDULE_REF = click.argument("schedule_ref", metavar="[SCHEDULE]", required=False)


@images.command("unschedule")
@REF
@SCHEDULE_REF
@pass_session
def unschedule(session: Session, ref: str, schedule_ref: str | None) -> None:
    """Delete one of an image's schedules (by id or id prefix; may be left out when it has one)."""
    api = session.api()
    image = lookup.image(api, ref)
    found = lookup.schedule(api, image, schedule_ref)
    api.delete(f"/v1/images/{image['id']}/schedules/{found['id']}")
    if session.json:
        session.emit({"deleted": found["id"]})
    else:
        click.echo(f"deleted schedule {output.short(found['id'])} ('{found['cron']}' in {found['timezone']}) of {image['name']}")


def _switch(enabled: bool) -> typing.Callable[..., None]:
    @REF
    @SCHEDULE_REF
    @pass_session
    def switch(session: Session, ref: str, schedule_ref: str | None) -> None:
        api = session.api()
        image = lookup.image(api, ref)
        found = lookup.schedule(api, image, schedule_ref)
        changed = api.request("PATCH", f"/v1/images/{image['id']}/schedules/{found['id']}", body={"enabled": enabled})
        session.emit(changed, SCHEDULE_COLUMNS, table=[changed])

    return switch


images.command("disable-schedule", help="Switch one of an image's schedules off (kept; enable-schedule switches it on).")(_switch(False))
images.command("enable-schedule", help="Switch one of an image's schedules on again; it fires from now on.")(_switch(True))
