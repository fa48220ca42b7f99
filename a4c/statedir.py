"""Where an ``a4c up`` keeps its state when no ``--state-dir`` is given: one rule for every command that finds it."""

from __future__ import annotations

import os
import pathlib
import typing


def default_state_dir(environ: typing.Mapping[str, str], euid: int, home: pathlib.Path) -> pathlib.Path:
    """``$XDG_STATE_HOME/a4c``, else ``~/.local/state/a4c``; as root ``/var/lib/a4c``.

    Root's home is private (mode 0700) and the embedded PostgreSQL runs as an
    unprivileged user that must reach its data directory, so a state
    directory under /root cannot work.
    """
    if environ.get("XDG_STATE_HOME"):
        return pathlib.Path(environ["XDG_STATE_HOME"]) / "a4c"
    if euid == 0:
        return pathlib.Path("/var/lib/a4c")
    return home / ".local" / "state" / "a4c"


DEFAULT = default_state_dir(os.environ, os.geteuid(), pathlib.Path.home())
