"""Shell completion of names (workspaces, images, hosts) from the API.

Click's built-in mechanism (``_A4C_COMPLETE``) calls these while the user
presses TAB; the root callback has not run then, so the server and token are
resolved here from the flags typed so far, the environment and the config
file. Completion must never print an error or hang: any failure completes
nothing, and requests give up after :data:`TIMEOUT` seconds.
"""

from __future__ import annotations

import typing

import click
from click import shell_completion

from a4c import errors, session

TIMEOUT = 2.0


def names(collection: str) -> typing.Callable[[click.Context, click.Parameter, str], list[shell_completion.CompletionItem]]:
    def complete(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[shell_completion.CompletionItem]:
        root = ctx.find_root().params
        current = session.Session(server_flag=root.get("server"), token_flag=root.get("token"), timeout=TIMEOUT)
        try:
            items = current.api().items(f"/v1/{collection}")
        except errors.CliError:
            return []
        return [shell_completion.CompletionItem(i["name"]) for i in items if i.get("name", "").startswith(incomplete)]

    return complete
