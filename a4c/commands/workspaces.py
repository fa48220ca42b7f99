"""``a4c workspaces``: create (optionally waiting until it runs), list, get, start, stop, delete, recreate; exec, logs, ssh.

Changes answer at once with the API's 202 (the workspace and the job that
carries the change out); ``--wait`` then watches (a4c/watch.py), printing a line on stderr for
every change of the job's status or reason, until the goal state, a failure
(exit 1) or ``--timeout`` (exit 1, saying what it waited for and what it saw).

``-o json`` prints the 202 answer ``{"workspace", "job"}``; with ``--wait``,
the workspace as it is at the end (for delete: the final job).

``exec`` and ``logs`` stream over a WebSocket through the API (a4c/streams.py);
``ssh`` prints an ssh config block for a workspace that publishes port 22.
"""

from __future__ import annotations

import json
import shlex
import sys
import typing

import click

from a4c import complete, follow, lookup, output, progress, streams
from a4c.session import Group, Session, pass_session


def disk(w: typing.Mapping[str, typing.Any]) -> str:
    """ "1.2G of 20G" where its host caps it, "20G reserved, not enforced" where not; ", over" past the reservation."""
    d = w.get("disk") or {}
    reserved, used = f"{w['disk_gb']}G", d.get("used_bytes")
    if d.get("enforced") is False:
        text = f"{reserved} reserved, not enforced" + (f" ({output.size(used)} used)" if used is not None else "")
    elif used is not None:
        text = f"{output.size(used)} of {reserved}"
    else:
        text = reserved
    return text + (", over" if d.get("over") else "")


COLUMNS: list[output.Column] = [
    ("id", lambda w: output.short(w["id"])),
    ("name", lambda w: w["name"]),
    ("state", lambda w: w["observed_state"]),
    ("host", lambda w: (w.get("placement") or {}).get("host_name") or output.short(w.get("host_id"))),
    ("image", lambda w: w["image_ref"]),
    ("cpus", lambda w: f"{w['cpus']:g}"),
    ("memory", lambda w: f"{w['memory_mb']}M"),
    ("disk", disk),
    ("ports", progress.published),
    ("reason", lambda w: w.get("state_reason")),
]

REF = click.argument("ref", shell_complete=complete.names("workspaces"))
WAIT_HELP = "Poll until it is {goal}, printing progress; exit 1 if it fails or --timeout passes."


@click.group(cls=Group)
def workspaces() -> None:
    """Create, list and control your workspaces."""


def _env(values: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--env")
        env[key] = value
    return env


@workspaces.command("create")
@click.argument("name")
@click.option("--image", help="A registered image (a4c images list).")
@click.option("--image-ref", help="Or any Docker image reference the hosts have, e.g. debian:12.")
@click.option("--cpus", type=float, default=1.0, show_default=True)
@click.option("--memory", "memory_mb", type=int, default=1024, show_default=True, help="MiB.")
@click.option(
    "--disk",
    "disk_gb",
    type=int,
    default=10,
    show_default=True,
    help="GiB reserved on the host; a hard cap only where the host enforces disk limits (docs/workspaces.md).",
)
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment variable; repeatable.")
@click.option("--port", "ports", type=int, multiple=True, help="Container port to publish (TCP); repeatable.")
@click.option(
    "--command",
    "command",
    metavar="'PROGRAM ARGS…'",
    help="Main process instead of the image's command, split like a shell line, e.g. 'httpd -f -p 8080'. "
    "Without it: the image's command, or a keep-alive if that is a bare shell (docs/workspaces.md).",
)
@click.option("--wait", is_flag=True, help=WAIT_HELP.format(goal="running"))
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True, help="Seconds --wait waits.")
@pass_session
def create(
    session: Session,
    name: str,
    image: str | None,
    image_ref: str | None,
    cpus: float,
    memory_mb: int,
    disk_gb: int,
    env: tuple[str, ...],
    ports: tuple[int, ...],
    command: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Create workspace NAME from --image or --image-ref."""
    if (image is None) == (image_ref is None):
        raise click.UsageError("give exactly one of --image NAME (registered) or --image-ref REF (a Docker reference)")
    body: dict[str, typing.Any] = {
        "name": name,
        "cpus": cpus,
        "memory_mb": memory_mb,
        "disk_gb": disk_gb,
        "env": _env(env),
        "ports": [{"container_port": p} for p in ports],
    }
    if command is not None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--command") from None
        if not argv:
            raise click.BadParameter("give a program to run", param_hint="--command")
        body["command"] = argv
    body["image" if image else "image_ref"] = image or image_ref
    api = session.api()
    accepted = api.post("/v1/workspaces", body)
    _finish(session, accepted, "running", wait, timeout)


def _finish(session: Session, accepted: dict[str, typing.Any], goal: str, wait: bool, timeout: float) -> None:
    ws, job = accepted["workspace"], accepted["job"]
    if not wait:
        session.emit(accepted, COLUMNS, table=ws)
        if not session.json:
            session.note(
                f"job {output.short(job['id'])} {job['status']}: {job['reason']}"
                if job.get("reason")
                else f"job {output.short(job['id'])} {job['status']}"
            )
        return
    session.note(f"waiting up to {timeout:g} s for workspace {ws['name']} to be {goal} (job {output.short(job['id'])})")
    final_job, final_ws = follow.wait_for_workspace(session.api(), ws, job["id"], goal, timeout, session.note)
    if final_ws is None or goal == "deleted":
        session.emit(final_job, [("job", lambda j: output.short(j["id"])), ("status", lambda j: j["status"]), ("workspace", lambda _: ws["name"])])
    else:
        session.emit(final_ws, COLUMNS)


@workspaces.command("list")
@click.option("--state", help="Only this observed state: pending, creating, running, stopped, exited, lost, failed, …")
@pass_session
def list_(session: Session, state: str | None) -> None:
    """Your workspaces (an admin sees everyone's), newest first."""
    items = session.api().items("/v1/workspaces", state=state)
    session.emit(items, COLUMNS, empty="no workspaces: a4c workspaces create NAME --image-ref IMAGE")


@workspaces.command("get")
@REF
@pass_session
def get(session: Session, ref: str) -> None:
    """One workspace by name, id or id prefix: state and reason, host, resources, ports."""
    session.emit(lookup.workspace(session.api(), ref))


def _change(verb: str, goal: str, doc: str) -> None:
    @REF
    @click.option("--wait", is_flag=True, help=WAIT_HELP.format(goal=goal))
    @click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True, help="Seconds --wait waits.")
    @pass_session
    def change(session: Session, ref: str, wait: bool, timeout: float) -> None:
        api = session.api()
        ws = lookup.workspace(api, ref)
        if verb == "delete":
            accepted = api.delete(f"/v1/workspaces/{ws['id']}")
        else:
            accepted = api.post(f"/v1/workspaces/{ws['id']}/{verb}")
        _finish(session, accepted, goal, wait, timeout)

    change.__doc__ = doc
    workspaces.command(verb)(change)


_change("start", "running", "Start a stopped workspace (REF: name, id or id prefix).")
_change("stop", "stopped", "Stop a workspace; it keeps its host and disk.")
_change("delete", "deleted", "Delete a workspace and its container.")
_change("recreate", "running", "Recreate a lost or failed workspace, placed anew (what the old container held is not carried over).")


@workspaces.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@REF
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-t/-T", "--tty/--no-tty", default=None, help="Give the command a terminal; default: when stdin is one.")
@click.option("-i", "--stdin", "interactive", is_flag=True, help="Pass stdin to the command (always with a terminal).")
@pass_session
def exec_(session: Session, ref: str, command: tuple[str, ...], tty: bool | None, interactive: bool) -> None:
    """Run COMMAND in a running workspace: a4c workspaces exec NAME -- CMD ARGS…

    Exits with the command's exit code. Output and session time are bounded
    by the agent's access.max_output_bytes and access.max_seconds.
    """
    if command[:1] == ("--",):
        command = command[1:]  # options end at REF, so click passes the separator on
    if not command:
        raise click.UsageError("give the command to run after --, e.g. a4c workspaces exec NAME -- sh")
    if tty is None:
        tty = sys.stdin.isatty() and sys.stdout.isatty()
    api = session.api()
    ws = lookup.workspace(api, ref)
    params = {"command": json.dumps(list(command)), "tty": "true" if tty else "false"}
    raise SystemExit(streams.run(api, f"/v1/workspaces/{ws['id']}/exec", params, stdin=interactive or tty, tty=tty))


@workspaces.command("logs")
@REF
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until Ctrl-C (or the agent's access.max_seconds).")
@click.option("--tail", type=click.IntRange(min=0), help="Only the last N lines.")
@pass_session
def logs(session: Session, ref: str, follow: bool, tail: int | None) -> None:
    """What the workspace's main process wrote (stdout and stderr)."""
    api = session.api()
    ws = lookup.workspace(api, ref)
    params = {"follow": "true" if follow else "false"}
    if tail is not None:
        params["tail"] = str(tail)
    try:
        code = streams.run(api, f"/v1/workspaces/{ws['id']}/logs", params, stdin=False, tty=False)
    except KeyboardInterrupt:
        code = 0
    raise SystemExit(code)


@workspaces.command("ssh")
@REF
@click.option("--user", default="root", show_default=True, help="User to log in as inside the workspace.")
@pass_session
def ssh(session: Session, ref: str, user: str) -> None:
    """Print an ssh config block for a workspace that runs sshd on a published port 22.

    Append it to ~/.ssh/config, then `ssh a4c-NAME`. The host port stays the
    same across stops, starts and restarts (docs/workspaces.md). Without an
    sshd in the image, use `a4c workspaces exec NAME -- sh` instead.
    """
    ws = lookup.workspace(session.api(), ref)
    ports = [p for p in ws.get("published_ports") or [] if p["container_port"] == 22 and p.get("protocol", "tcp") == "tcp"]
    if not ports:
        raise click.ClickException(
            f"workspace {ws['name']} publishes no port 22 (create it with --port 22 and an image that runs sshd), "
            f"or it is not running; for a shell without ssh: a4c workspaces exec {ws['name']} -- sh"
        )
    host = (ws.get("placement") or {}).get("host_name") or "HOST"
    address = ports[0]["host_ip"]
    if address in ("0.0.0.0", "::", ""):
        address = host
    click.echo(f"Host a4c-{ws['name']}\n    HostName {address}\n    Port {ports[0]['host_port']}\n    User {user}")
