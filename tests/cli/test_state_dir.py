"""Where `a4c up` keeps its state when no --state-dir is given (a4c/up.py)."""

from __future__ import annotations

import pathlib

from a4c import up

HOME = pathlib.Path("/home/ada")


def test_a_user_gets_the_xdg_default_under_their_home() -> None:
    assert up.default_state_dir({}, 1000, HOME) == HOME / ".local" / "state" / "a4c"


def test_root_gets_var_lib_since_its_home_is_closed_to_the_postgres_user() -> None:
    assert up.default_state_dir({}, 0, pathlib.Path("/root")) == pathlib.Path("/var/lib/a4c")


def test_xdg_state_home_wins_for_anyone() -> None:
    for euid in (0, 1000):
        assert up.default_state_dir({"XDG_STATE_HOME": "/srv/state"}, euid, HOME) == pathlib.Path("/srv/state/a4c")
    assert up.default_state_dir({"XDG_STATE_HOME": ""}, 1000, HOME) == HOME / ".local" / "state" / "a4c"
