"""``a4c admin``: users, API tokens (a new one works at once, a revoked one stops), enrolment tokens."""

from __future__ import annotations

import json
import re


def test_a_user_created_and_given_a_token_can_use_it_until_it_is_revoked(cli):
    user = json.loads(cli.ok("-o", "json", "admin", "users", "create", "carol").stdout)
    assert (user["name"], user["role"]) == ("carol", "user")
    assert "carol" in [u["name"] for u in json.loads(cli.ok("-o", "json", "admin", "users", "list").stdout)]

    issued = cli.ok("admin", "tokens", "create", "carol", "--name", "laptop")
    token = re.search(r"^token: (\S+)$", issued.stdout, re.M).group(1)
    assert "shown only now" in issued.stderr
    assert json.loads(cli.ok("-o", "json", "whoami", A4C_TOKEN=token).stdout)["name"] == "carol"

    listed = json.loads(cli.ok("-o", "json", "admin", "tokens", "list", "carol").stdout)["items"]
    assert [t["name"] for t in listed] == ["laptop"] and token.startswith(listed[0]["prefix"])
    assert "token" not in listed[0], "listings never carry the secret"

    revoked = json.loads(cli.ok("-o", "json", "admin", "tokens", "revoke", listed[0]["id"]).stdout)
    assert revoked["revoked_at"]
    after = cli.run("whoami", A4C_TOKEN=token)
    assert after.code == 4 and "run a4c login" in after.stderr, str(after)


def test_a_taken_user_name_exits_1_and_a_bad_one_exits_6(cli):
    cli.ok("admin", "users", "create", "dave")
    assert cli.run("admin", "users", "create", "dave").code == 1
    bad = cli.run("admin", "users", "create", "Dave Smith")
    assert bad.code == 6 and re.search(r"^  name: ", bad.stderr, re.M), str(bad)


def test_enrolment_tokens_are_issued_listed_and_revoked_by_id_prefix(cli):
    issued = json.loads(cli.ok("-o", "json", "admin", "enrolment-tokens", "create", "--description", "rack 4", "--max-uses", "3").stdout)
    assert issued["token"] and (issued["description"], issued["max_uses"], issued["uses"]) == ("rack 4", 3, 0)
    table = cli.ok("admin", "enrolment-tokens", "list").stdout
    assert re.search(rf"^{issued['id'][:8]} +{re.escape(issued['prefix'])} +rack 4 +0/3 +\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d +-$", table, re.M), table
    revoked = json.loads(cli.ok("-o", "json", "admin", "enrolment-tokens", "revoke", issued["id"][:8]).stdout)
    assert revoked["id"] == issued["id"] and revoked["revoked_at"]


def test_creating_a_token_for_nobody_exits_3(cli):
    done = cli.run("admin", "tokens", "create", "nobody-at-all")
    assert done.code == 3 and "no user named 'nobody-at-all'" in done.stderr, str(done)


def test_hosts_list_without_agents_says_how_to_enrol_one(cli):
    assert cli.ok("hosts", "list").stdout.strip() == "no hosts: enrol an agent with a token from a4c admin enrolment-tokens create"
    assert json.loads(cli.ok("hosts", "list", "-o", "json").stdout) == []
