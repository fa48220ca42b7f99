"""``a4c workspaces`` against a control plane without agents: workspaces stay pending, and the CLI says why."""

from __future__ import annotations

import json
import re

SMALL = ("--cpus", "0.1", "--memory", "32", "--disk", "1")


def _create(cli, name: str, *extra: str) -> dict:
    return json.loads(cli.ok("-o", "json", "workspaces", "create", name, "--image-ref", "busybox", *SMALL, *extra).stdout)


def test_create_prints_the_apis_202_answer_as_json(cli):
    body = _create(cli, "json-shape", "--env", "EDITOR=vim", "--env", "X=a=b", "--port", "22", "--port", "8080")
    assert set(body) == {"workspace", "job"}
    ws, job = body["workspace"], body["job"]
    assert ws["env"] == {"EDITOR": "vim", "X": "a=b"}
    assert ws["ports"] == [{"container_port": 22, "protocol": "tcp"}, {"container_port": 8080, "protocol": "tcp"}]
    assert (ws["cpus"], ws["memory_mb"], ws["disk_gb"]) == (0.1, 32, 1)
    assert job["kind"] == "workspace_create" and job["workspace_id"] == ws["id"]
    # As returned: the same object GET answers, key for key.
    assert json.loads(cli.ok("-o", "json", "workspaces", "get", ws["id"]).stdout) == cli.api("GET", f"/v1/workspaces/{ws['id']}")


def test_without_agents_a_new_workspace_stays_pending_and_the_table_says_why(cli):
    done = cli.ok("workspaces", "create", "waits-for-a-host", "--image-ref", "busybox", *SMALL)
    header, row = done.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "HOST", "IMAGE", "CPUS", "MEMORY", "DISK", "PORTS", "REASON"]
    assert row.split()[1:3] == ["waits-for-a-host", "pending"]
    assert "no eligible host" in row[header.index("REASON") :]
    assert re.match(r"job [0-9a-f]{8} pending: no eligible host", done.stderr), done.stderr
    shown = cli.ok("workspaces", "get", "waits-for-a-host").stdout
    assert re.search(r"^observed_state +pending$", shown, re.M) and re.search(r"^state_reason +no eligible host", shown, re.M), shown


def test_waiting_for_a_workspace_that_cannot_be_placed_times_out_with_exit_1_saying_what_it_waited_for(cli):
    done = cli.process("workspaces", "create", "never-runs", "--image-ref", "busybox", *SMALL, "--wait", "--timeout", "1.5")
    assert done.code == 1, str(done)
    lines = done.stderr.splitlines()
    assert re.match(r"waiting up to 1.5 s for workspace never-runs to be running \(job [0-9a-f]{8}\)", lines[0]), lines
    assert re.match(r"\[ *\d+\.\ds\] job pending: no eligible host.*; workspace pending", lines[1]), lines
    assert lines[-1].startswith(
        "error: timed out after 1.5 s waiting for workspace never-runs to be running; last seen: job pending: no eligible host"
    )
    assert done.stdout == ""


def test_a_workspace_is_found_by_name_by_full_id_and_by_id_prefix(cli):
    ws = _create(cli, "findable")["workspace"]
    for ref in ("findable", ws["id"], ws["id"][:8], ws["id"][:13]):
        assert json.loads(cli.ok("-o", "json", "workspaces", "get", ref).stdout)["id"] == ws["id"], ref


def test_an_ambiguous_id_prefix_is_a_usage_error_listing_the_candidates(cli):
    made = [_create(cli, f"twin-{i}")["workspace"] for i in range(17)]
    # 17 ids, 16 hex digits: at least two share their first character.
    first = [w["id"][0] for w in made]
    shared = next(c for c in first if first.count(c) > 1)
    done = cli.run("workspaces", "get", shared)
    assert done.code == 2, str(done)
    assert re.search(rf"'{shared}' starts \d+ workspaces: ", done.stderr) and "give more of the id" in done.stderr, done.stderr
    for ws in made:
        cli.ok("workspaces", "delete", ws["id"])


def test_list_shows_the_apis_objects_in_json_and_a_table_by_default(cli):
    ws = _create(cli, "listed")["workspace"]
    listed = json.loads(cli.ok("workspaces", "list", "-o", "json").stdout)
    assert isinstance(listed, list)
    [mine] = [w for w in listed if w["id"] == ws["id"]]
    assert mine == cli.api("GET", f"/v1/workspaces/{ws['id']}")
    table = cli.ok("workspaces", "list", "--state", "pending").stdout.splitlines()
    assert table[0].startswith("ID ") and any(line.split()[:3] == [ws["id"][:8], "listed", "pending"] for line in table[1:]), table


def test_deleting_a_workspace_never_placed_with_wait_exits_0_and_it_is_gone(cli):
    ws = _create(cli, "short-lived")["workspace"]
    done = cli.run("-o", "json", "workspaces", "delete", "short-lived", "--wait", "--timeout", "30")
    assert done.code == 0, str(done)
    job = json.loads(done.stdout)
    assert (job["kind"], job["status"], job["workspace_id"]) == ("workspace_delete", "succeeded", ws["id"])
    assert re.search(r"\] job succeeded.*; workspace gone$", done.stderr, re.M), done.stderr
    assert cli.run("workspaces", "get", ws["id"]).code == 3


def test_stopping_a_workspace_that_is_not_placed_yet_exits_1_with_the_apis_reason(cli):
    _create(cli, "not-placed")
    done = cli.run("workspaces", "stop", "not-placed")
    assert done.code == 1, str(done)
    assert done.stderr.startswith("error: cannot stop a workspace that is not placed yet: no eligible host"), done.stderr
