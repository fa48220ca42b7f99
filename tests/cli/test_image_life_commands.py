"""``a4c images update|delete|unschedule|disable-schedule|enable-schedule`` against a real control plane (no agents), and names per owner."""

from __future__ import annotations

import json
import uuid


def _user(cli) -> str:
    user = cli.api("POST", "/v1/users", {"name": f"u{uuid.uuid4().hex[:8]}"})
    return cli.api("POST", f"/v1/users/{user['id']}/tokens", {})["token"]


def _register(cli, tmp_path, name: str, *extra: str, **env: str) -> dict:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    return json.loads(cli.ok("-o", "json", "images", "register", name, "--dockerfile", str(tmp_path / "Dockerfile"), *extra, **env).stdout)


def test_update_sends_only_what_is_given_and_the_next_build_uses_it(cli, tmp_path):
    image = _register(cli, tmp_path, "changing", "--build-arg", "V=1")
    (tmp_path / "Dockerfile.new").write_text("FROM busybox\nRUN echo two\n")
    done = cli.ok("-o", "json", "images", "update", "changing", "--dockerfile", str(tmp_path / "Dockerfile.new"), "--shared")
    changed = json.loads(done.stdout)
    assert changed["dockerfile"] == "FROM busybox\nRUN echo two\n" and changed["shared"] is True and changed["build_args"] == {"V": "1"}
    assert "a4c images build changing" in done.stderr
    to_git = json.loads(
        cli.ok(
            "-o", "json", "images", "update", image["id"][:8], "--git", "https://git.example.com/dev/box.git", "--ref", "v3", "--no-build-args"
        ).stdout
    )
    assert (to_git["dockerfile"], to_git["git_url"], to_git["git_ref"], to_git["build_args"]) == (
        None,
        "https://git.example.com/dev/box.git",
        "v3",
        {},
    )
    assert cli.api("GET", f"/v1/images/{image['id']}") == to_git


def test_update_with_nothing_or_a_bad_field_is_refused(cli, tmp_path):
    _register(cli, tmp_path, "unchanged")
    nothing = cli.run("images", "update", "unchanged")
    assert nothing.code == 2 and "nothing to change" in nothing.stderr
    inline_ref = cli.run("images", "update", "unchanged", "--ref", "v1")
    assert inline_ref.code == 6 and "git_ref" in inline_ref.stderr, str(inline_ref)


def test_delete_is_refused_while_a_workspace_uses_the_image_and_then_works(cli, tmp_path):
    image = _register(cli, tmp_path, "in-use")
    ws = cli.api("POST", "/v1/workspaces", {"name": "uses-it", "image": "in-use", "cpus": 1, "memory_mb": 256, "disk_gb": 1})["workspace"]
    refused = cli.run("images", "delete", "in-use")
    assert refused.code == 1 and "uses-it" in refused.stderr and "delete those first" in refused.stderr, str(refused)
    cli.ok("workspaces", "delete", "uses-it")
    # Never placed (no agents here), so deleting it ends it at once: nothing uses the image any more.
    assert cli.run("workspaces", "get", ws["id"]).code == 3
    done = cli.ok("images", "delete", "in-use")
    assert f"deleted image in-use ({image['id'][:8]})" in done.stdout
    assert cli.run("images", "get", "in-use").code == 3


def test_schedules_are_switched_off_and_on_and_deleted(cli, tmp_path):
    _register(cli, tmp_path, "scheduled")
    made = json.loads(cli.ok("-o", "json", "images", "schedule", "scheduled", "--cron", "0 3 * * *").stdout)
    off = cli.ok("images", "disable-schedule", "scheduled")  # its only schedule: no id needed
    _header, row = off.stdout.splitlines()
    assert row.split()[:4] == [made["id"][:8], "0", "3", "*"] and " no " in f" {row} "
    assert cli.api("GET", f"/v1/images/{made['image_id']}/schedules/{made['id']}")["next_run_at"] is None
    on = json.loads(cli.ok("-o", "json", "images", "enable-schedule", "scheduled", made["id"][:6]).stdout)
    assert on["enabled"] is True and on["next_run_at"] is not None
    cli.ok("images", "schedule", "scheduled", "--cron", "@hourly")
    two = cli.run("images", "unschedule", "scheduled")
    assert two.code == 2 and "has 2 schedules; name one" in two.stderr
    assert cli.run("images", "unschedule", "scheduled", "ffffffff").code == 3
    gone = cli.ok("images", "unschedule", "scheduled", made["id"][:8])
    assert f"deleted schedule {made['id'][:8]}" in gone.stdout
    left = cli.api("GET", f"/v1/images/{made['image_id']}/schedules")["items"]
    assert [s["cron"] for s in left] == ["@hourly"]


def test_two_users_each_have_their_own_devbox_and_the_cli_finds_their_own(cli, tmp_path):
    alice, bob = _user(cli), _user(cli)
    a = _register(cli, tmp_path, "devbox", A4C_TOKEN=alice)
    b = _register(cli, tmp_path, "devbox", A4C_TOKEN=bob)
    assert a["id"] != b["id"] and a["tag"] != b["tag"]
    assert json.loads(cli.ok("-o", "json", "images", "get", "devbox", A4C_TOKEN=alice).stdout)["id"] == a["id"]
    assert b["id"] in cli.ok("-o", "json", "images", "list", A4C_TOKEN=bob).stdout
    assert a["id"] not in cli.ok("-o", "json", "images", "list", A4C_TOKEN=bob).stdout
    # Bob shares his: Alice still means her own by the name, Bob his.
    cli.ok("images", "update", "devbox", "--shared", A4C_TOKEN=bob)
    assert json.loads(cli.ok("-o", "json", "images", "get", "devbox", A4C_TOKEN=alice).stdout)["id"] == a["id"]
    cli.ok("images", "delete", "devbox", A4C_TOKEN=alice)
    assert json.loads(cli.ok("-o", "json", "images", "get", "devbox", A4C_TOKEN=alice).stdout)["id"] == b["id"], "then the shared one"
    assert cli.run("images", "delete", "devbox", A4C_TOKEN=alice).code == 4, "visible, not hers"
