"""``a4c``: the command line for people and scripts. It talks only to the control plane's HTTP API.

Server and token come from ``--server/--token``, else ``A4C_SERVER/A4C_TOKEN``,
else the file ``a4c login`` writes (:mod:`a4c.config`). Every command prints
an aligned table by default and the API's JSON with ``-o json`` (before or
after the command's name). Failures are one message on stderr and an exit
code from :class:`a4c.errors.Exit`, never a traceback. Shell completion:
``eval "$(a4c completion bash)"`` (or zsh, fish).
"""

from __future__ import annotations

import importlib.metadata
import typing

import click
from click import shell_completion

from a4c import client, config, debian_image, errors, up
from a4c.commands import admin, ci, hosts, images, jobs, workspaces
from a4c.session import OUTPUT_CHOICE, Group, Session, pass_session

COMPLETE_VAR = "_A4C_COMPLETE"  # click's convention for a program named a4c


class Main(Group):
    """The root: turns every CLI error into ``error: …`` on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> typing.Any:
        try:
            return super().invoke(ctx)
        except errors.CliError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", metavar="URL", help=f"API URL, e.g. http://127.0.0.1:8080 [env {config.SERVER_ENV}; else a4c login's file]")
@click.option("--token", help=f"API token [env {config.TOKEN_ENV}; else a4c login's file]. Flags show in ps: prefer those two.")
@click.option("-o", "--output", "fmt", type=OUTPUT_CHOICE, default="table", show_default=True, help="json: the API's objects as returned.")
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=client.DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds per API request.",
)
@click.version_option(importlib.metadata.version("a4c"), "--version", prog_name="a4c")
@click.pass_context
def main(ctx: click.Context, server: str | None, token: str | None, fmt: str, request_timeout: float) -> None:
    """A4C: developer workspaces on a fleet of servers.

    \b
    Exit codes: 0 ok · 1 the operation failed (job, build, --wait timeout, conflict)
    2 usage · 3 not found · 4 token rejected or not allowed · 5 API unreachable
    or failing · 6 invalid input (each bad field is named)
    """
    ctx.obj = Session(server_flag=server, token_flag=token, fmt=fmt, timeout=request_timeout)


for group in (workspaces.workspaces, images.images, jobs.jobs, hosts.hosts, admin.admin, ci.ci):
    main.add_command(group)
main.add_command(up.command)
main.add_command(debian_image.command)


@main.command()
@click.option("--server", "login_server", metavar="URL", help=f"API URL (else --server before login, or {config.SERVER_ENV}).")
@click.option("--token", "login_token", help=f"Your API token (else {config.TOKEN_ENV}, else asked for without echo).")
@pass_session
def login(session: Session, login_server: str | None, login_token: str | None) -> None:
    """Check a token against the API, then save server and token (mode 0600)."""
    # Only flags and environment: re-sending the saved token to a different server would leak it.
    server = config.check_server(
        config.resolve(
            login_server or session.server_flag, "--server", session.environ, config.SERVER_ENV, {}, "server", config.path(session.environ)
        )
    )
    token = login_token or session.token_flag or session.environ.get(config.TOKEN_ENV) or click.prompt("token", hide_input=True)
    try:
        me = client.Client(server, token, timeout=session.timeout).get("/v1/me")
    except errors.ApiError as exc:
        if exc.status != 401:
            raise
        rejected = errors.CliError(f"{server} rejected the token ({exc.message}); nothing was saved")
        rejected.exit_code = errors.Exit.AUTH
        raise rejected from None
    saved = config.save(config.path(session.environ), server, token)
    if session.json:
        session.emit(me)
    else:
        click.echo(f"logged in to {server} as {me['name']} ({me['role']}); saved to {saved}")


@main.command()
@pass_session
def logout(session: Session) -> None:
    """Forget the saved server and token (the token itself stays valid: an admin revokes it)."""
    saved = config.path(session.environ)
    try:
        saved.unlink()
    except FileNotFoundError:
        click.echo(f"nothing to forget: {saved} does not exist")
        return
    click.echo(f"removed {saved}")


@main.command()
@pass_session
def whoami(session: Session) -> None:
    """Who the token belongs to, and where the server and token settings came from."""
    me = session.api().get("/v1/me")
    if session.json:
        session.emit(me)
        return
    server, token = session.settings()
    session.emit({**me, "server": f"{server.value} (from {server.source})", "token": f"from {token.source}"})


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(a4c completion bash)"     (e.g. in ~/.bashrc)
    zsh:   eval "$(a4c completion zsh)"      (e.g. in ~/.zshrc)
    fish:  a4c completion fish > ~/.config/fish/completions/a4c.fish
    """
    complete = shell_completion.get_completion_class(shell)
    if complete is None:  # click ships all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(complete(main, {}, "a4c", COMPLETE_VAR).source())


if __name__ == "__main__":
    main(prog_name="a4c", complete_var=COMPLETE_VAR)
