"""``a4c hosts`` (admins): the fleet with disk use, one host's disk report, cordon, uncordon, drain."""

from __future__ import annotations

import typing

import click

from a4c import complete, lookup, output
from a4c.session import Group, Session, pass_session

Obj = typing.Mapping[str, typing.Any]


def disk_use(h: Obj) -> str:
    used, total = h["disk"].get("used_bytes"), h["disk"].get("total_bytes")
    if used is None or not total:
        return "no report yet"
    return f"{output.percent(used, total)} ({output.size(used)}/{output.size(total)})"


def disk_limits(d: Obj) -> str:
    """Whether the host caps workspaces at their disk_gb (``d``: a host's disk, or its disk report)."""
    enforced = d.get("enforced")
    return "unknown" if enforced is None else "enforced" if enforced else "not enforced"


def _status(h: Obj) -> str:
    return h["status"] + (",draining" if h.get("draining") else ",cordoned" if h.get("cordoned") else "")


COLUMNS: list[output.Column] = [
    ("id", lambda h: output.short(h["id"])),
    ("name", lambda h: h["name"]),
    ("status", _status),
    ("disk used", disk_use),
    ("disk limits", lambda h: disk_limits(h["disk"])),
    ("workspaces", lambda h: h["allocated"]["workspaces"]),
    ("cpus", lambda h: f"{h['allocated']['cpus']:g}/{h['capacity']['cpus']:g}"),
    ("memory", lambda h: f"{output.size(h['allocated']['memory_mb'] * 1024**2)}/{output.size(h['capacity']['memory_mb'] * 1024**2)}"),
    ("heartbeat (UTC)", lambda h: output.when(h.get("last_heartbeat_at"))),
]
REMAINING_COLUMNS: list[output.Column] = [
    ("id", lambda w: output.short(w["id"])),
    ("name", lambda w: w["name"]),
    ("owner", lambda w: output.short(w["owner_id"])),
    ("state", lambda w: w["observed_state"]),
]
PATH_COLUMNS: list[output.Column] = [
    ("path", lambda p: p["path"]),
    ("used", lambda p: f"{p['percent']:.0f}% ({output.size(p['used_bytes'])}/{output.size(p['total_bytes'])})"),
    ("free", lambda p: output.size(p["free_bytes"])),
]

REF = click.argument("ref", shell_complete=complete.names("hosts"))


@click.group(cls=Group)
def hosts() -> None:
    """The servers workspaces run on (admins)."""


@hosts.command("list")
@click.option("--status", type=click.Choice(["active", "down"]), help="Only hosts in this status.")
@pass_session
def list_(session: Session, status: str | None) -> None:
    """Hosts with status, disk use, allocation and last heartbeat."""
    items = session.api().items("/v1/hosts", status=status)
    session.emit(items, COLUMNS, empty="no hosts: enrol an agent with a token from a4c admin enrolment-tokens create")


@hosts.command("get")
@REF
@pass_session
def get(session: Session, ref: str) -> None:
    """One host by name, id or id prefix."""
    session.emit(lookup.host(session.api(), ref))


@hosts.command("disk")
@REF
@pass_session
def disk(session: Session, ref: str) -> None:
    """A host's latest disk report: per path, Docker's own figures, and what placement has promised."""
    api = session.api()
    report = api.get(f"/v1/hosts/{lookup.host(api, ref)['id']}/disk")
    if session.json:
        session.emit(report)
        return
    click.echo(
        f"{report['host_name']}: {output.percent(report['used_bytes'], report['total_bytes'])} used "
        f"({output.size(report['used_bytes'])}/{output.size(report['total_bytes'])}), reported {output.when(report['reported_at'])} UTC"
    )
    click.echo(
        f"workspace quotas: {output.size(report['allocated_bytes'])} allocated, {output.size(report['promised_bytes'])} promised to pending ones"
    )
    click.echo(f"workspace disk limits: {disk_limits(report)}" + (f" ({report['enforcement']})" if report.get("enforcement") else ""))
    if report["paths"]:
        output.print_table(report["paths"], PATH_COLUMNS)
    if report["docker"]:
        click.echo("docker: " + ", ".join(f"{k} {output.size(v)}" for k, v in sorted(report["docker"].items())))


def _simple(verb: str, doc: str) -> None:
    @REF
    @pass_session
    def action(session: Session, ref: str) -> None:
        api = session.api()
        session.emit(api.post(f"/v1/hosts/{lookup.host(api, ref)['id']}/{verb}"), COLUMNS)

    action.__doc__ = doc
    hosts.command(verb)(action)


_simple("cordon", "Place no new workspaces on a host; those there keep running.")
_simple("uncordon", "Allow placements on a host again (also ends a drain).")


@hosts.command("drain")
@REF
@pass_session
def drain(session: Session, ref: str) -> None:
    """Cordon a host and list the workspaces still living there (nothing is moved)."""
    api = session.api()
    answer = api.post(f"/v1/hosts/{lookup.host(api, ref)['id']}/drain")
    if session.json:
        session.emit(answer)
        return
    host, remaining = answer["host"], answer["remaining"]
    if not remaining:
        click.echo(f"{host['name']} is drained: no workspaces live there.")
        return
    click.echo(f"{host['name']} is cordoned; {len(remaining)} workspace(s) still live there:")
    output.print_table(remaining, REMAINING_COLUMNS)
