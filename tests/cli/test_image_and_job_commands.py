"""``a4c images`` and ``a4c jobs`` without agents: registration, schedules with their next runs, search, get, logs."""

from __future__ import annotations

import json
import re


def test_registering_from_a_dockerfile_sends_it_inline_and_prints_the_apis_image(cli, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM busybox\nRUN echo hello\n")
    image = json.loads(cli.ok("-o", "json", "images", "register", "from-file", "--dockerfile", str(dockerfile), "--build-arg", "V=1").stdout)
    assert image["dockerfile"] == dockerfile.read_text() and image["git_url"] is None and image["build_args"] == {"V": "1"}
    assert image == cli.api("GET", f"/v1/images/{image['id']}")


def test_registering_from_git_sends_url_ref_and_path_and_the_table_shows_the_source(cli):
    done = cli.ok("images", "register", "from-git", "--git", "https://git.example.com/dev/box.git", "--ref", "v2", "--path", "images/dev")
    header, row = done.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "SOURCE", "SHARED", "TAG", "BUILT"]
    assert row.split()[1:3] == ["from-git", "https://git.example.com/dev/box.git@v2:images/dev"]


def test_giving_both_or_neither_image_source_is_a_usage_error(cli, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM busybox\n")
    both = cli.run("images", "register", "x", "--dockerfile", str(dockerfile), "--git", "https://h/r.git")
    neither = cli.run("images", "register", "x")
    assert both.code == neither.code == 2 and "exactly one of --dockerfile PATH or --git URL" in both.stderr + neither.stderr


def test_a_schedule_prints_its_next_runs_in_its_time_zone_and_in_utc(cli, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    cli.ok("images", "register", "nightly", "--dockerfile", str(tmp_path / "Dockerfile"))
    shown = cli.ok("images", "schedule", "nightly", "--cron", "0 3 * * *", "--timezone", "Europe/Berlin").stdout.splitlines()
    assert re.match(r"schedule [0-9a-f]{8} for nightly: '0 3 \* \* \*' in Europe/Berlin; next runs:", shown[0]), shown
    runs = shown[1:]
    assert len(runs) == 5
    # 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC in summer.
    assert all(re.fullmatch(r"  \d{4}-\d\d-\d\d 03:00 Europe/Berlin \(0[12]:00 UTC\)", r) for r in runs), runs
    listed = json.loads(cli.ok("-o", "json", "images", "schedules", "nightly").stdout)
    assert [(s["cron"], s["timezone"], len(s["next_runs"])) for s in listed["items"]] == [("0 3 * * *", "Europe/Berlin", 5)]


def test_a_bad_cron_expression_exits_6_naming_the_cron_field(cli, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    cli.ok("images", "register", "badly-timed", "--dockerfile", str(tmp_path / "Dockerfile"))
    done = cli.run("images", "schedule", "badly-timed", "--cron", "every night")
    assert done.code == 6 and re.search(r"^  cron: ", done.stderr, re.M), str(done)


def test_a_build_with_no_host_to_run_it_stays_pending_and_following_it_times_out_with_exit_1(cli, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    cli.ok("images", "register", "unbuilt", "--dockerfile", str(tmp_path / "Dockerfile"))
    done = cli.process("images", "build", "unbuilt", "--follow", "--timeout", "1")
    assert done.code == 1, str(done)
    assert "job pending: waiting for a host that can build: no hosts are enrolled" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: timed out after 1 s waiting for the job to end; job ")


def _search(cli, *args: str) -> dict:
    return json.loads(cli.ok("-o", "json", "jobs", "search", *args).stdout)


def test_search_passes_the_query_syntax_through_and_prints_the_apis_answer(cli):
    ws = json.loads(
        cli.ok(
            "-o", "json", "workspaces", "create", "searched-for", "--image-ref", "busybox", "--cpus", "0.1", "--memory", "32", "--disk", "1"
        ).stdout
    )
    answer = _search(cli, "kind:workspace_create status:pending workspace:searched-for")
    assert set(answer) == {"jobs", "total", "total_exact", "facets", "next_cursor", "backend", "degraded", "query"}
    assert [j["id"] for j in answer["jobs"]] == [ws["job"]["id"]] and answer["total"] == 1
    assert answer["facets"] is None, "facets are skipped unless asked for"
    assert _search(cli, "--facets", "workspace:searched-for")["facets"]["status"] == [{"value": "pending", "count": 1}]
    # Several words are one query; a word the shell unquoted ("no such") stays a phrase.
    assert _search(cli, "workspace:searched-for", "status:pending")["total"] == 1
    assert _search(cli, "workspace:searched-for", "no such phrase")["query"].endswith('"no such phrase"')


def test_search_follows_cursors_with_all_and_says_how_many_there_are_in_the_table(cli):
    for i in range(3):
        cli.ok("workspaces", "create", f"paged-{i}", "--image-ref", "busybox", "--cpus", "0.1", "--memory", "32", "--disk", "1")
    one_page = _search(cli, "--limit", "2", "workspace:paged-0,paged-1,paged-2")
    every = _search(cli, "--limit", "2", "--all", "workspace:paged-0,paged-1,paged-2")
    assert len(one_page["jobs"]) == 2 and one_page["next_cursor"]
    assert sorted(j["workspace_name"] for j in every["jobs"]) == ["paged-0", "paged-1", "paged-2"] and every["next_cursor"] is None
    table = cli.ok("jobs", "search", "--limit", "2", "workspace:paged-0,paged-1,paged-2")
    assert len(table.stdout.splitlines()) == 3 and table.stdout.split()[:3] == ["ID", "KIND", "STATUS"]
    assert table.stderr.startswith("2 of 3 jobs; more with --all; served by postgresql"), table.stderr


def test_a_mistake_in_the_query_exits_6_naming_the_query_and_the_token(cli):
    done = cli.process("jobs", "search", "colour:red")
    assert done.code == 6, str(done)
    assert re.search(r"^  query: 'colour:red' .*unknown key 'colour'", done.stderr, re.M), done.stderr


def test_a_job_is_shown_by_id_prefix_and_its_log_printed(cli):
    made = json.loads(
        cli.ok("-o", "json", "workspaces", "create", "with-a-job", "--image-ref", "busybox", "--cpus", "0.1", "--memory", "32", "--disk", "1").stdout
    )
    job_id = made["job"]["id"]
    assert json.loads(cli.ok("-o", "json", "jobs", "get", job_id[:8]).stdout) == cli.api("GET", f"/v1/jobs/{job_id}")
    shown = cli.ok("jobs", "get", job_id[:8]).stdout
    assert re.search(rf"^id +{job_id}$", shown, re.M) and re.search(r"^reason +no eligible host", shown, re.M) and "log_tail" not in shown
    logs = cli.ok("jobs", "logs", job_id)
    assert logs.stdout == "" and logs.code == 0, "a job that has not run has an empty log"
