"""``a4c admin`` (admins): users, their API tokens, and the enrolment tokens agents join with.

Secrets (a new API or enrolment token) are in the create answer only; the
table view prints them on their own line with a reminder that they are not
shown again.
"""

from __future__ import annotations

import typing

import click

from a4c import lookup, output
from a4c.session import Group, Session, pass_session

USER_COLUMNS: list[output.Column] = [
    ("id", lambda u: output.short(u["id"])),
    ("name", lambda u: u["name"]),
    ("role", lambda u: u["role"]),
    ("disabled", lambda u: "yes" if u.get("disabled") else "no"),
    ("created (UTC)", lambda u: output.when(u.get("created_at"))),
]
TOKEN_COLUMNS: list[output.Column] = [
    ("id", lambda t: t["id"]),
    ("name", lambda t: t.get("name")),
    ("prefix", lambda t: t["prefix"]),
    ("expires (UTC)", lambda t: output.when(t.get("expires_at")) if t.get("expires_at") else "never"),
    ("revoked (UTC)", lambda t: output.when(t.get("revoked_at"))),
    ("last used (UTC)", lambda t: output.when(t.get("last_used_at"))),
]
ENROLMENT_COLUMNS: list[output.Column] = [
    ("id", lambda t: output.short(t["id"])),
    ("prefix", lambda t: t["prefix"]),
    ("description", lambda t: t.get("description")),
    ("uses", lambda t: f"{t['uses']}/{t['max_uses']}" if t.get("max_uses") else f"{t['uses']}/unlimited"),
    ("expires (UTC)", lambda t: output.when(t.get("expires_at")) if t.get("expires_at") else "never"),
    ("revoked (UTC)", lambda t: output.when(t.get("revoked_at"))),
]


def _secret(session: Session, issued: dict[str, typing.Any], columns: list[output.Column], what: str) -> None:
    if session.json:
        session.emit(issued)
        return
    output.print_table(issued, columns)
    click.echo(f"\n{what}: {issued['token']}")
    session.note("it is shown only now: only its hash is kept")


@click.group(cls=Group)
def admin() -> None:
    """Users, API tokens and agent enrolment tokens (admins)."""


@admin.group("users", cls=Group)
def users() -> None:
    """People and their roles."""


@users.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["user", "admin"]), default="user", show_default=True)
@pass_session
def users_create(session: Session, name: str, role: str) -> None:
    """Create a user (then give them a token: a4c admin tokens create NAME)."""
    session.emit(session.api().post("/v1/users", {"name": name, "role": role}), USER_COLUMNS)


@users.command("list")
@pass_session
def users_list(session: Session) -> None:
    """All users, newest first."""
    session.emit(session.api().items("/v1/users"), USER_COLUMNS, empty="no users")


@admin.group("tokens", cls=Group)
def tokens() -> None:
    """API tokens (the secret is shown once, when issued)."""


@tokens.command("create")
@click.argument("user")
@click.option("--name", default="", help="What the token is for, shown in listings.")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), help="Default: the server's auth.token_ttl_days.")
@pass_session
def tokens_create(session: Session, user: str, name: str, expires_in_days: int | None) -> None:
    """Issue an API token for USER (name or id)."""
    api = session.api()
    owner = lookup.user(api, user)
    body: dict[str, typing.Any] = {"name": name}
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    _secret(session, api.post(f"/v1/users/{owner['id']}/tokens", body), TOKEN_COLUMNS, "token")


@tokens.command("list")
@click.argument("user")
@pass_session
def tokens_list(session: Session, user: str) -> None:
    """USER's tokens (prefixes only, never the secrets)."""
    api = session.api()
    answer = api.get(f"/v1/users/{lookup.user(api, user)['id']}/tokens")
    session.emit(answer, TOKEN_COLUMNS, table=answer["items"], empty="no tokens")


@tokens.command("revoke")
@click.argument("token_id")
@pass_session
def tokens_revoke(session: Session, token_id: str) -> None:
    """Revoke an API token by its id (a4c admin tokens list USER shows them)."""
    session.emit(session.api().delete(f"/v1/tokens/{token_id}"), TOKEN_COLUMNS)


@admin.group("enrolment-tokens", cls=Group)
def enrolment_tokens() -> None:
    """Tokens agents enrol with (give one to the Ansible role or agent config)."""


@enrolment_tokens.command("create")
@click.option("--description", default="", help="What it is for.")
@click.option("--max-uses", type=click.IntRange(1, 1_000_000), help="Hosts it may enrol. Default: the server's enrolment.token_max_uses (1).")
@click.option(
    "--expires-in",
    "expires_in",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds until it expires. Default: the server's enrolment.token_ttl (3600).",
)
@pass_session
def enrolment_create(session: Session, description: str, max_uses: int | None, expires_in: float | None) -> None:
    """Issue an enrolment token."""
    body = {"description": description, "max_uses": max_uses, "expires_in_seconds": expires_in}
    _secret(session, session.api().post("/v1/enrolment-tokens", body), ENROLMENT_COLUMNS, "enrolment token")


@enrolment_tokens.command("list")
@pass_session
def enrolment_list(session: Session) -> None:
    """Enrolment tokens with their use counts (prefixes only)."""
    session.emit(session.api().items("/v1/enrolment-tokens"), ENROLMENT_COLUMNS, empty="no enrolment tokens")


@enrolment_tokens.command("revoke")
@click.argument("ref")
@pass_session
def enrolment_revoke(session: Session, ref: str) -> None:
    """Revoke an enrolment token (id or id prefix); hosts it enrolled keep their keys."""
    api = session.api()
    session.emit(api.delete(f"/v1/enrolment-tokens/{lookup.enrolment_token(api, ref)['id']}"), ENROLMENT_COLUMNS)
