"""Where `a4c up` keeps its state when no --state-dir is given (a4c/statedir.py), and the commands that look for it agree."""

from __future__ import annotations

import pathlib

from a4c import debian_image, statedir, up

HOME = pathlib.Path("/home/ada")


def test_a_user_gets_the_xdg_default_under_their_home() -> None:
    assert statedir.default_state_dir({}, 1000, HOME) == HOME / ".local" / "state" / "a4c"


def test_root_gets_var_lib_since_its_home_is_closed_to_the_postgres_user() -> None:
    assert statedir.default_state_dir({}, 0, pathlib.Path("/root")) == pathlib.Path("/var/lib/a4c")


def test_xdg_state_home_wins_for_anyone() -> None:
    for euid in (0, 1000):
        assert statedir.default_state_dir({"XDG_STATE_HOME": "/srv/state"}, euid, HOME) == pathlib.Path("/srv/state/a4c")
    assert statedir.default_state_dir({"XDG_STATE_HOME": ""}, 1000, HOME) == HOME / ".local" / "state" / "a4c"


def test_every_command_that_finds_an_a4c_up_looks_where_it_keeps_its_state() -> None:
    # debian-image once had its own default (~/.local/state/a4c), so as root it never found the daemon of `a4c up`.
    for command in (up.command, debian_image.command):
        option = next(p for p in command.params if p.name == "state_dir")
        assert option.default is statedir.DEFAULT, command.name  # the one rule's answer, not an equal copy
