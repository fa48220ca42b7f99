"""What every command receives: the global flags, resolved lazily into an API client.

Lazily, so that ``a4c --help``, ``a4c completion bash`` or a usage error never
read the config file or need a server.
"""

from __future__ import annotations

import dataclasses
import os
import typing

import click

from a4c import client, config, output


@dataclasses.dataclass
class Session:
    server_flag: str | None = None
    token_flag: str | None = None
    fmt: str = "table"
    timeout: float = client.DEFAULT_TIMEOUT
    environ: typing.Mapping[str, str] = dataclasses.field(default_factory=lambda: os.environ)
    _api: client.Client | None = dataclasses.field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.fmt == "json"

    def settings(self) -> tuple[config.Setting, config.Setting]:
        file = config.path(self.environ)
        flags_and_env = self.server_flag or self.environ.get(config.SERVER_ENV), self.token_flag or self.environ.get(config.TOKEN_ENV)
        saved = {} if all(flags_and_env) else config.load(file)
        server = config.resolve(self.server_flag, "--server", self.environ, config.SERVER_ENV, saved, "server", file)
        token = config.resolve(self.token_flag, "--token", self.environ, config.TOKEN_ENV, saved, "token", file)
        return server, token

    def api(self) -> client.Client:
        if self._api is None:
            server, token = self.settings()
            self._api = client.Client(config.check_server(server), config.check_token(token), timeout=self.timeout)
        return self._api

    def emit(
        self, data: typing.Any, columns: typing.Sequence[output.Column] | None = None, *, table: typing.Any = None, empty: str = "nothing to show"
    ) -> None:
        """``-o json``: ``data`` exactly (the API's objects). Otherwise a table of ``table`` (default: ``data``)."""
        if self.json:
            output.print_json(data)
        elif columns is None:
            output.print_fields(data if table is None else table)
        else:
            output.print_table(data if table is None else table, columns, empty=empty)

    def note(self, text: str) -> None:
        """A line for people (progress, hints): on stderr, so stdout stays parseable in every format."""
        click.echo(text, err=True)


pass_session = click.make_pass_decorator(Session)


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    session = ctx.find_object(Session)
    if value is not None and session is not None:
        session.fmt = value


OUTPUT_CHOICE = click.Choice(["table", "json"])


class Command(click.Command):
    """Every command also takes ``-o/--output`` after its name: ``a4c workspaces list -o json`` works too."""

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(
            click.Option(
                ["-o", "--output"],
                type=OUTPUT_CHOICE,
                expose_value=False,
                callback=_set_output,
                help="table (default) or json: the API's objects as returned.",
            )
        )


class Group(click.Group):
    command_class = Command
    group_class = type  # subgroups are Groups too, so their commands get -o as well
