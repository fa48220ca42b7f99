"""``a4c jobs cancel``: a build that waits ends cancelled; a workspace's job says what to do instead (exit 1)."""

from __future__ import annotations

import json


def test_cancelling_a_pending_build_by_id_prefix_ends_it_and_a_second_cancel_is_a_conflict(cli, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    cli.ok("images", "register", "to-cancel", "--dockerfile", str(tmp_path / "Dockerfile"))
    [job] = json.loads(cli.ok("-o", "json", "images", "build", "to-cancel").stdout)["jobs"]
    assert job["status"] == "pending"
    shown = cli.ok("jobs", "cancel", job["id"][:8]).stdout
    assert "cancelled" in shown and job["id"] in shown
    assert cli.api("GET", f"/v1/jobs/{job['id']}")["status"] == "cancelled"
    again = cli.run("jobs", "cancel", job["id"])
    assert again.code == 1 and "error: the job has already ended (cancelled)" in again.stderr, str(again)
