"""``a4c login`` checks the token and saves it privately; flags beat the environment, which beats the saved file."""

from __future__ import annotations

import json
import stat

import pytest
import yaml

from tests.harness import ports


@pytest.fixture
def tokens(cli) -> dict[str, str]:
    """Tokens of two ordinary users, made through the CLI, by name."""
    made = {}
    for name in ("prec-file", "prec-env"):
        if not any(u["name"] == name for u in json.loads(cli.ok("-o", "json", "admin", "users", "list").stdout)):
            cli.ok("admin", "users", "create", name)
        made[name] = json.loads(cli.ok("-o", "json", "admin", "tokens", "create", name).stdout)["token"]
    return made


def _saved(cli):
    return cli.home / "config" / "a4c" / "config.yaml"


def test_login_checks_the_token_then_writes_the_config_file_readable_only_by_its_owner(cli):
    done = cli.process("login", "--server", cli.server, "--token", cli.token, A4C_SERVER=None, A4C_TOKEN=None)
    assert done.code == 0, str(done)
    saved = _saved(cli)
    assert done.stdout.strip() == f"logged in to {cli.server} as admin (admin); saved to {saved}"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert yaml.safe_load(saved.read_text()) == {"server": cli.server, "token": cli.token}
    # Nothing else needed from now on.
    listed = cli.process("-o", "json", "workspaces", "list", A4C_SERVER=None, A4C_TOKEN=None)
    assert listed.code == 0 and isinstance(json.loads(listed.stdout), list), str(listed)


def test_login_over_an_existing_file_keeps_it_private(cli):
    saved = _saved(cli)
    saved.parent.mkdir(parents=True)
    saved.write_text("server: http://old\n")
    saved.chmod(0o644)
    cli.ok("login", "--server", cli.server, "--token", cli.token)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600 and cli.token in saved.read_text()


def test_a_rejected_login_exits_4_and_saves_nothing(cli):
    done = cli.run("login", "--server", cli.server, "--token", "a4c_wrong", A4C_SERVER=None, A4C_TOKEN=None)
    assert done.code == 4, str(done)
    assert f"{cli.server} rejected the token" in done.stderr and "nothing was saved" in done.stderr
    assert not _saved(cli).exists()


def test_login_asks_for_the_token_without_echoing_it_when_no_flag_or_variable_gives_one(cli):
    done = cli.run("login", "--server", cli.server, input=cli.token + "\n", A4C_TOKEN=None)
    assert done.code == 0, str(done)
    assert cli.token not in done.stdout + done.stderr, "the typed token is not echoed"
    assert yaml.safe_load(_saved(cli).read_text())["token"] == cli.token


def test_a_flag_beats_the_environment_which_beats_the_saved_file(cli, tokens):
    cli.ok("login", "--server", cli.server, "--token", tokens["prec-file"])

    def whoami(*flags: str, **env: str | None) -> str:
        return json.loads(cli.ok(*flags, "-o", "json", "whoami", **env).stdout)["name"]

    assert whoami(A4C_SERVER=None, A4C_TOKEN=None) == "prec-file"
    assert whoami(A4C_SERVER=None, A4C_TOKEN=tokens["prec-env"]) == "prec-env"
    assert whoami("--token", cli.token, A4C_SERVER=None, A4C_TOKEN=tokens["prec-env"]) == "admin"

    # The same order for the server: a dead one from the environment loses to a live flag, and beats the file.
    dead = f"http://127.0.0.1:{ports.free_port()}"
    from_env = cli.run("whoami", A4C_SERVER=dead, A4C_TOKEN=None)
    assert from_env.code == 5 and dead in from_env.stderr, str(from_env)
    assert whoami("--server", cli.server, A4C_SERVER=dead, A4C_TOKEN=None) == "prec-file"


def test_whoami_says_where_the_server_and_token_came_from(cli):
    from_env = cli.ok("whoami").stdout
    assert f"{cli.server} (from A4C_SERVER)" in from_env and "from A4C_TOKEN" in from_env, from_env
    cli.ok("login", "--server", cli.server, "--token", cli.token)
    from_file = cli.ok("whoami", A4C_SERVER=None, A4C_TOKEN=None).stdout
    assert f"{cli.server} (from {_saved(cli)})" in from_file and f"token     from {_saved(cli)}" in from_file, from_file
    from_flag = cli.ok("--token", cli.token, "whoami", A4C_SERVER=None, A4C_TOKEN=None).stdout
    assert "token     from --token" in from_flag, from_flag


def test_a_damaged_config_file_is_a_usage_error_naming_it(cli):
    saved = _saved(cli)
    saved.parent.mkdir(parents=True)
    saved.write_text("server: [unclosed\n")
    done = cli.run("workspaces", "list", A4C_SERVER=None, A4C_TOKEN=None)
    assert done.code == 2 and str(saved) in done.stderr and "run a4c login again" in done.stderr, str(done)


def test_logout_forgets_the_saved_server_and_token(cli):
    cli.ok("login", "--server", cli.server, "--token", cli.token)
    assert cli.ok("logout").stdout.strip() == f"removed {_saved(cli)}"
    assert not _saved(cli).exists()
    after = cli.run("workspaces", "list", A4C_SERVER=None, A4C_TOKEN=None)
    assert after.code == 2 and "no server given" in after.stderr, str(after)
